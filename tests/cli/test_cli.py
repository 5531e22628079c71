"""The keras-distil command line: listing, help for every flag, recipe + flags + --set precedence, errors."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from keras_distil.cli import COMMANDS, available_commands, build_parser, main
from keras_distil.cli.distill import recipe_from_args
from keras_distil.config import ConfigError, load_recipe


def test_top_level_help_lists_the_commands_that_exist(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("prepare", "pretrain", "distill", "convert"):
        assert name in available_commands() and name in out
    assert set(available_commands()) <= set(COMMANDS)


def _subparser(name):
    parser = build_parser(name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("name", ["distill", "pretrain"])
def test_every_flag_is_documented(name):
    parser = _subparser(name)
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {"--recipe", "--set", "--train-data", "--out", "--strategy", "--tpu", "--steps"} <= {
        s for a in flags for s in a.option_strings}
    assert ("--teacher" in parser._option_string_actions) == (name == "distill")
    for action in flags:
        assert action.help and len(action.help) > 10, action.option_strings
    assert "resumes" in parser.format_help()


def test_precedence_recipe_then_flags_then_set(tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"out": "from-recipe", "train": {"steps": 7, "seed": 1}, "data": {"batch_size": 4}}))
    parser = _subparser("distill")
    args = parser.parse_args(["--recipe", str(recipe), "--out", "from-flag", "--steps", "9", "--teacher", "t",
                              "--train-data", "a.txt", "--train-data", "b/*.txt",
                              "--set", "train.steps=11", "--set", "data.bucket_boundaries=[8,16]",
                              "--set", "distill.temperature=3"])
    r = recipe_from_args(args)
    assert (r.out, r.train.steps, r.train.seed, r.data.batch_size) == ("from-flag", 11, 1, 4)
    assert r.train_data == ["a.txt", "b/*.txt"] and r.teacher == "t"
    assert r.data.bucket_boundaries == [8, 16] and r.distill.temperature == 3.0


@pytest.mark.parametrize("item, message", [
    ("train.stepz=3", "train: unknown key(s) stepz"),
    ("train.steps=many", "train.steps: got 'many'"),
    ("steps", "expected section.key=value"),
    ("data=3", "data: expected an object"),
])
def test_bad_set_items_name_the_key(item, message):
    with pytest.raises(ConfigError) as err:
        load_recipe(None, [item])
    assert message in str(err.value)


def test_errors_exit_2_with_the_key_named(tmp_path, capsys):
    assert main(["distill", "--out", str(tmp_path / "run"), "--set", "train.stepz=1"]) == 2
    assert "keras-distil distill: error: train: unknown key(s) stepz" in capsys.readouterr().err
    assert main(["distill", "--out", str(tmp_path / "run"), "--train-data", "x.txt"]) == 2
    assert "teacher: no teacher given" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(tmp_path / "run"), "--train-data", "x.txt"]) == 2
    assert "data.vocab_file: pretraining needs" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "keras_distil", "distill", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "--teacher" in out.stdout


@pytest.mark.parametrize("command", [
    ["distill", "--teacher", "t", "--train-data", "x.txt"],
    ["pretrain", "--train-data", "x.txt", "--set", "data.vocab_file=v.txt"],
    ["prepare", "x.txt", "--vocab", "v.txt"],
    ["finetune", "--model", "m", "--train", "a.csv", "--test", "b.csv"],
], ids=lambda c: c[0])
def test_an_unwritable_out_is_a_one_line_error_before_any_work(command, tmp_path, capsys):
    """A file where the output folder should be, or a read-only parent: exit 2 naming --out, before the
    (here missing) teacher, corpus or model is even looked at."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out, why in ((blocker, "a file, not a folder"), (blocker / "run", "is a file, not a folder")):
        assert main([*command, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "out" in err[0] and why in err[0], err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root ignores the mode: nothing to check then
            assert main([*command, "--out", str(locked / "run")]) == 2
            assert "is not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_evaluate_checks_its_report_path_before_evaluating(tmp_path, capsys):
    (tmp_path / "reports").write_text("x")
    assert main(["evaluate", "--model", "m", "--data", "x.txt", "--out", str(tmp_path / "reports" / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file, not a folder" in err
    assert main(["evaluate", "--model", "m", "--data", "x.txt", "--out", str(tmp_path)]) == 2
    assert "a folder, not a file" in capsys.readouterr().err


def test_recipes_lists_every_shipped_recipe_with_its_line(capsys):
    from keras_distil.config import shipped_recipes

    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == shipped_recipes()
    assert {"distilbert-base-uncased", "sentence-embedding", "tiny", "tinybert-4l-312", "minilm-6l-384"} <= \
        set(shipped_recipes())
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # each has its description
