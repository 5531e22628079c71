"""The shipped recipes load, validate and say what they claim (the paper's numbers for DistilBERT)."""

import glob
import os

import pytest

from keras_distil.config import load_recipe

RECIPES = os.path.join(os.path.dirname(__file__), "..", "recipes")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(RECIPES, "*.json"))), ids=os.path.basename)
def test_every_recipe_validates(path):
    load_recipe(path)


def test_distilbert_recipe_is_the_papers():
    r = load_recipe(os.path.join(RECIPES, "distilbert-base-uncased.json"))
    d, t, data = r.distill, r.train, r.data
    assert d.student_layers == [0, 2, 4, 7, 9, 11]
    assert (d.temperature, d.alpha_ce, d.alpha_mlm, d.alpha_cos) == (2.0, 5.0, 2.0, 1.0)
    assert d.ce_positions == "all"  # the reference implementation's soft targets on every token
    assert (t.learning_rate, t.adam_beta_1, t.adam_beta_2, t.adam_epsilon) == (5e-4, 0.9, 0.98, 1e-6)
    assert (t.warmup_prop, t.max_grad_norm, t.epochs) == (0.05, 5.0, 3)
    # "Very large batches (up to 4K examples per batch) using gradient accumulation" (Sanh et al. 2019).
    assert 3800 <= data.batch_size * t.gradient_accumulation_steps <= 4200
    assert (data.mlm_mask_prop, data.word_mask, data.word_keep, data.word_rand) == (0.15, 0.8, 0.1, 0.1)


def test_encoder_only_recipe_uses_hidden_state_losses_alone():
    d = load_recipe(os.path.join(RECIPES, "encoder-only-sentence-embedding.json")).distill
    assert d.alpha_ce == d.alpha_mlm == d.alpha_mse == 0
    assert d.alpha_cos > 0 and d.alpha_hidden_mse > 0
