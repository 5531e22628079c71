"""The shipped recipes load, validate and say what they claim (the paper's numbers for DistilBERT)."""

import glob
import json
import os

import pytest

from keras_distil.config import RECIPES_DIR, RecipeConfig, Section, load_recipe, resolve_masking


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(RECIPES_DIR, "*.json"))), ids=os.path.basename)
def test_every_recipe_validates(path):
    """Loads, round-trips through to_dict / from_dict unchanged, and every knob of the file is in the config
    with the file's value (none dropped, renamed or silently replaced by a default)."""
    recipe = load_recipe(path)
    as_dict = recipe.to_dict()
    assert RecipeConfig.from_dict(as_dict) == recipe
    assert RecipeConfig.from_dict(as_dict).to_dict() == as_dict
    with open(path, encoding="utf-8") as f:
        written = json.load(f)
    assert written, path
    knobs = 0
    for key, value in written.items():
        if isinstance(value, dict):
            assert isinstance(getattr(recipe, key), Section), key
            for name, setting in value.items():
                assert as_dict[key][name] == setting and type(as_dict[key][name]) in _same_kind(setting), \
                    (f"{key}.{name}", setting, as_dict[key][name])
                knobs += 1
        else:
            assert as_dict[key] == value, (key, value, as_dict[key])
            knobs += 1
    assert knobs >= 5, path


def _same_kind(value):
    """The Python types a JSON value may load as: a JSON 1 for a float knob is a float, a list may be a tuple."""
    if isinstance(value, bool):
        return (bool,)
    if isinstance(value, (int, float)):
        return (int, float)
    if isinstance(value, list):
        return (list, tuple)
    return (type(value),)


def test_distilbert_recipe_is_the_papers():
    r = load_recipe(os.path.join(RECIPES_DIR, "distilbert-base-uncased.json"))
    d, t, data = r.distill, r.train, r.data
    assert d.student_layers == [0, 2, 4, 7, 9, 11]
    assert (d.temperature, d.alpha_ce, d.alpha_mlm, d.alpha_cos) == (2.0, 5.0, 2.0, 1.0)
    assert d.ce_positions == "all"  # the reference implementation's soft targets on every token
    assert (t.learning_rate, t.adam_beta_1, t.adam_beta_2, t.adam_epsilon) == (5e-4, 0.9, 0.98, 1e-6)
    assert (t.warmup_prop, t.max_grad_norm, t.epochs) == (0.05, 5.0, 3)
    # "Very large batches (up to 4K examples per batch) using gradient accumulation" (Sanh et al. 2019).
    assert 3800 <= data.batch_size * t.gradient_accumulation_steps <= 4200
    assert (data.mlm_mask_prop, data.word_mask, data.word_keep, data.word_rand) == (0.15, 0.8, 0.1, 0.1)


def test_sentence_embedding_recipe_trains_on_clean_text_with_embedding_terms_alone():
    r = load_recipe(os.path.join(RECIPES_DIR, "sentence-embedding.json"))
    d = r.distill
    assert d.alpha_ce == d.alpha_mlm == d.alpha_mse == 0  # an encoder-only teacher has no logits
    assert d.alpha_sentence_cos > 0 and d.alpha_cos > 0
    assert resolve_masking(r.data, d) == "none"  # sentence encoders are used on clean text
    # The first and the last of a 6-layer teacher's layers: the copy closest to it (docs/decisions.md).
    assert d.student_layers == [0, 3, 5] and r.student.dropout == 0.0
    # Fits 20 minutes on 2 cores (README: the measured table): 600 steps of 64 in bfloat16 took 15.3 min
    # (float32: 21.3 min, the same held-out figures to 1e-4).
    assert r.train.steps is not None and r.data.batch_size * r.train.steps <= 64 * 600
    assert r.train.mixed_precision == "mixed_bfloat16"


@pytest.mark.parametrize("name, shape, layer_map, relation_pairs, active", [
    ("tinybert-4l-312", (4, 312, 12, 1200), [2, 5, 8, 11], [(0, 2), (1, 5), (2, 8), (3, 11)],
     ("layer_mse", "attention", "embedding_mse")),
    ("minilm-6l-384", (6, 384, 12, 1536), [1, 3, 5, 7, 9, 11], [(5, 11)], ("attention", "value_relation")),
])
def test_narrow_recipes_have_the_published_shapes_for_a_bert_base_teacher(name, shape, layer_map, relation_pairs,
                                                                          active):
    """TinyBERT (Jiao et al. 2020: 4 x 312, 12 heads, FFN 1200; embedding, hidden-state and attention terms on
    every k-th layer) and MiniLM (Wang et al. 2020: 6 x 384, 12 heads; attention and value relations of the
    last layer) for BERT-base (the ModelConfig defaults: 12 x 768, 12 heads), by name, on clean text."""
    from keras_distil.config import ModelConfig
    from keras_distil.layer_terms import LayerTerms
    from keras_distil.models.student import student_model_config

    recipe = load_recipe(name)
    bert_base = ModelConfig()
    student = student_model_config(bert_base, recipe.student, recipe.distill.student_layers)
    assert (student.num_layers, student.hidden_size, student.num_heads, student.intermediate_size) == shape
    terms = LayerTerms(recipe.distill, bert_base, student)
    assert terms.active == active and terms.layer_map == layer_map and terms.relation_pairs == relation_pairs
    assert not recipe.distill.uses_logits and resolve_masking(recipe.data, recipe.distill) == "none"
    if "value_relation" in active:
        assert terms.relation_heads == 12  # 768 / 12 and 384 / 12: MiniLM's per-head relations
    # The same numbers as a DistilBERT-sized update: a multiple of the paper's batch through accumulation.
    assert recipe.data.batch_size * recipe.train.gradient_accumulation_steps >= 256
