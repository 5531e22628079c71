"""Config sections: defaults, JSON round trip, and errors that name the key and what is accepted."""

import json

import pytest

from keras_distil.config import (
    ConfigError,
    DataConfig,
    DistillConfig,
    ModelConfig,
    RecipeConfig,
    TrainConfig,
    dump_json,
    load_json,
    resolve_masking,
)


def test_distill_defaults_are_the_papers():
    cfg = DistillConfig()
    assert (cfg.temperature, cfg.alpha_ce, cfg.alpha_mlm, cfg.alpha_cos, cfg.alpha_mse) == (2.0, 5.0, 2.0, 1.0, 0.0)
    assert cfg.ce_positions == "all" and cfg.student_layers is None
    assert cfg.alpha_hidden_mse == 0.0 and cfg.student_init == "teacher"


def test_hidden_mse_alone_is_a_valid_objective():
    cfg = DistillConfig.from_dict({"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0, "alpha_hidden_mse": 1})
    assert cfg.alpha_hidden_mse == 1.0 and not cfg.needs_teacher_logits


def test_json_round_trip(tmp_path):
    cfg = DistillConfig.from_dict({"temperature": 3, "student_layers": [0, 2, 4, 7, 9, 11], "ce_positions": "masked",
                                   "alpha_hidden_mse": 0.5, "student_init": "random"})
    assert cfg.temperature == 3.0 and isinstance(cfg.temperature, float)
    dump_json(cfg.to_dict(), tmp_path / "c.json")
    assert DistillConfig.from_dict(load_json(tmp_path / "c.json")) == cfg


@pytest.mark.parametrize(
    "bad, key, accepted",
    [
        ({"tempreature": 2.0}, "tempreature", "accepted keys"),
        ({"temperature": 0}, "distill.temperature", "> 0"),
        ({"temperature": -1.0}, "distill.temperature", "> 0"),
        ({"alpha_ce": -0.5}, "distill.alpha_ce", ">= 0"),
        ({"alpha_ce": "5"}, "distill.alpha_ce", "float"),
        ({"alpha_mlm": True}, "distill.alpha_mlm", "float"),
        ({"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0, "alpha_mse": 0}, "alpha", "at least one"),
        ({"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0, "alpha_mse": 0, "alpha_hidden_mse": 0},
         "alpha", "alpha_hidden_mse"),
        ({"alpha_hidden_mse": -1}, "distill.alpha_hidden_mse", ">= 0"),
        ({"student_init": "scratch"}, "distill.student_init", "'teacher' | 'random'"),
        ({"student_init": None}, "distill.student_init", "'teacher' | 'random'"),
        ({"ce_positions": "some"}, "distill.ce_positions", "'all' | 'masked'"),
        ({"student_layers": [0, "2"]}, "distill.student_layers", "list of int"),
        ({"student_layers": [-1]}, "distill.student_layers", ">= 0"),
    ],
)
def test_bad_distill_knobs_name_key_and_accepted(bad, key, accepted):
    with pytest.raises(ConfigError) as err:
        DistillConfig.from_dict(bad)
    assert key in str(err.value) and accepted in str(err.value)


@pytest.mark.parametrize(
    "section, bad, key",
    [
        (ModelConfig, {"hidden_size": 30, "num_heads": 4}, "model.num_heads"),
        (ModelConfig, {"num_layers": 0}, "model.num_layers"),
        (DataConfig, {"word_mask": 0.5}, "word_mask/word_keep/word_rand"),
        (DataConfig, {"min_len": 200}, "data.min_len"),
        (TrainConfig, {"warmup_prop": 1.5}, "train.warmup_prop"),
        (TrainConfig, {"strategy": "horovod"}, "train.strategy"),
    ],
)
def test_other_sections_validate(section, bad, key):
    with pytest.raises(ConfigError, match=key.replace("/", ".")):
        section.from_dict(bad)


def test_load_json_names_the_file(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="recipe.json"):
        load_json(path)
    with pytest.raises(ConfigError, match="missing.json"):
        load_json(tmp_path / "missing.json")
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="JSON object"):
        load_json(path)


@pytest.mark.parametrize("distill, expected", [
    ({}, "mlm"),  # the paper's loss: soft targets + masked LM + cosine, on masked text
    ({"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 1, "alpha_hidden_mse": 1}, "none"),
    ({"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0, "alpha_sentence_mse": 1}, "none"),
    ({"alpha_ce": 1, "alpha_mlm": 0, "alpha_cos": 0}, "mlm"),
    ({"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0, "alpha_mse": 1}, "mlm"),
])
def test_masking_auto_follows_the_loss(distill, expected):
    recipe = RecipeConfig.from_dict({"distill": distill})
    assert resolve_masking(recipe.data, recipe.distill) == expected


@pytest.mark.parametrize("distill, key", [
    ({}, "distill.alpha_mlm=2.0"),
    ({"alpha_mlm": 0, "ce_positions": "masked"}, "distill.ce_positions='masked'"),
])
def test_masking_off_with_a_term_at_masked_positions_names_both_keys(distill, key):
    with pytest.raises(ConfigError, match=f"data.masking: 'none' .* but {key} needs them"):
        RecipeConfig.from_dict({"data": {"masking": "none"}, "distill": distill})
    # soft targets on every token need no masked position: clean text is accepted
    RecipeConfig.from_dict({"data": {"masking": "none"}, "distill": {"alpha_mlm": 0, "ce_positions": "all"}})


def test_sentence_knobs_validate():
    cfg = DistillConfig.from_dict({"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0, "alpha_sentence_cos": 1,
                                   "pooling": "max", "normalize_embeddings": True})
    assert cfg.uses_sentence_embeddings and not cfg.uses_logits
    with pytest.raises(ConfigError, match="distill.pooling: got 'sum'; accepted: 'auto' | 'mean' | 'cls' | 'max'"):
        DistillConfig.from_dict({"pooling": "sum"})
    with pytest.raises(ConfigError, match="distill.alpha_sentence_mse: got -1"):
        DistillConfig.from_dict({"alpha_sentence_mse": -1})
