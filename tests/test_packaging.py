"""What the installed package carries and asks for: recipes by name, the quickstart extra's message."""

import os
import sys

import numpy as np
import pytest

from keras_distil.config import ConfigError, load_recipe, recipe_path, shipped_recipes


def test_shipped_recipes_load_by_name(tmp_path):
    assert {"tiny", "distilbert-base-uncased", "sentence-embedding"} <= set(shipped_recipes())
    assert recipe_path("tiny") == recipe_path("tiny.json")
    assert os.path.isfile(recipe_path("tiny"))
    assert load_recipe("distilbert-base-uncased").distill.student_layers == [0, 2, 4, 7, 9, 11]
    own = tmp_path / "tiny.json"
    own.write_text("{}")
    assert recipe_path(str(own)) == str(own)  # a path that exists is taken as it is
    with pytest.raises(ConfigError, match="tinyy: no such file, and no shipped recipe of that name; shipped recipes: "
                                          ".*tiny"):
        recipe_path("tinyy")
    with pytest.raises(ConfigError, match="no such file"):
        load_recipe(str(tmp_path / "absent.json"))


def test_quickstart_without_matplotlib_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    from keras_distil.cli.quickstart import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["--out", str(tmp_path / "qs"), "--no-export"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'keras-distil[quickstart]'" in err[0], err
    assert not os.path.exists(tmp_path / "qs" / "corpus")  # refused before the first stage


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_a_recipe_by_name_from_another_folder(tmp_path):
    """Build the wheel, install it (no editable link, no source tree on the path) into a new venv whose only
    other packages are the project venv's dependencies, and from an unrelated folder list the recipes and run
    ``distill --recipe tiny`` for one step."""
    import glob
    import json
    import site
    import subprocess

    import keras

    from keras_distil.models.bert import build_mlm_model

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", repo,
                    "-w", str(tmp_path / "dist")], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    fresh_site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                                capture_output=True, text=True).stdout.strip()
    with open(os.path.join(fresh_site, "project_dependencies.pth"), "w") as f:  # the dependencies, not the package
        f.write("\n".join(p for p in site.getsitepackages() if os.path.isdir(p)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q",
                    *glob.glob(str(tmp_path / "dist" / "*.whl"))], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    listed = subprocess.run([python, "-m", "keras_distil", "recipes", "--paths"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, check=True).stdout
    assert os.path.join(fresh_site, "keras_distil", "recipes", "tiny.json") in listed, listed
    # A teacher of the tiny recipe's shape over a word vocabulary, and a corpus.
    recipe = load_recipe("tiny")
    words = [f"w{i}" for i in range(60)]
    (elsewhere / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    rng = np.random.default_rng(0)
    (elsewhere / "corpus.txt").write_text("\n".join(" ".join(rng.choice(words, 20)) for _ in range(64)) + "\n")
    keras.utils.set_random_seed(0)
    build_mlm_model(recipe.model.replace(vocab_size=65)).save(elsewhere / "teacher.keras")
    run = subprocess.run([python, "-m", "keras_distil", "distill", "--recipe", "tiny", "--teacher", "teacher.keras",
                          "--train-data", "corpus.txt", "--out", "run", "--set", "data.vocab_file=vocab.txt",
                          "--set", "train.steps=1", "--quiet"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    config = json.loads((elsewhere / "run" / "config.json").read_text())
    assert config["train"]["steps"] == 1 and (elsewhere / "run" / "student" / "student.keras").exists()
