"""What the installed package carries and asks for: recipes by name, the quickstart extra's message."""

import os
import sys

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
