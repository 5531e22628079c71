"""Quiet and quick (issue 14, item 5): help without TensorFlow, no native start-up lines, each log line once,
no retracing warnings from the toolkit's compiled forwards; convert's one-line reason for a DST it cannot
write. The speed itself is measured by hand (``time keras-distil --help``), not asserted: the assertions are
on what gets imported and printed."""

import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers.batches import TINY_MODEL, make_batch

import keras_distil_cli
from keras_distil_cli import COMMANDS, is_native_chatter

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
# The installed console script's function (setup.py's entry point), loaded as the keras-distil script does;
# run from a folder of its own, where no stale keras_distil.egg-info of a wheel build shadows the installed one.
LOAD_CONSOLE_SCRIPT = ("from importlib.metadata import entry_points; "
                       "main = entry_points(group='console_scripts')['keras-distil'].load()")
NATIVE_LINE = "I0000 00:00:1796187916.784265   23414 port.cc:153] oneDNN custom operations are on.\n"


def _python(code: str, env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env if env is not None else dict(os.environ))


def _env_without_quieting() -> dict:
    """The environment of a user who set nothing: no TF_CPP_MIN_LOG_LEVEL (the Makefile and conftest set it)."""
    return {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}


def test_help_of_the_tool_and_of_every_command_imports_no_tensorflow(tmp_path):
    """``keras-distil --help`` and ``keras-distil COMMAND --help`` print their help without importing the
    library (whose import is TensorFlow's, ~5 s): the console script's parsers are argparse alone."""
    code = LOAD_CONSOLE_SCRIPT + f"""
import sys
for argv in [["--help"]] + [[name, "--help"] for name in {sorted(COMMANDS)!r}]:
    try:
        main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
heavy = sorted(m for m in ("tensorflow", "keras", "keras_hub", "keras_distil") if m in sys.modules)
print("IMPORTED", heavy)
"""
    done = _python(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "IMPORTED []" in done.stdout, done.stdout[-500:]
    for name in COMMANDS:
        assert f"usage: keras-distil {name} " in done.stdout


def test_the_help_lists_every_command_and_documents_log_level(capsys):
    with pytest.raises(SystemExit):
        keras_distil_cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS) and "--log-level" in out and "DEBUG also shows" in out


def test_the_cli_copies_of_the_library_choices_agree_with_it():
    """The parsers show copies of library constants (reading them would import TensorFlow): each must agree."""
    from keras_distil.config import shipped_recipes
    from keras_distil.evaluation import loop
    from keras_distil.export import api, tflite, verify
    from keras_distil.finetune import classifier
    from keras_distil.models import checkpoint_formats
    from keras_distil.quickstart.run import QuickstartSettings
    from keras_distil.training import strategy
    from keras_distil_cli import convert, distill, evaluate, export, finetune, quickstart

    assert keras_distil_cli.shipped_recipe_names() == shipped_recipes()
    assert convert.FORMATS == checkpoint_formats.FORMATS
    assert distill.STRATEGIES == strategy.STRATEGIES
    assert (evaluate.EVAL_SEED, evaluate.MAX_TEXTS) == (loop.EVAL_SEED, loop.MAX_TEXTS)
    assert export.FORMATS == api.FORMATS and export.QUANTIZATIONS == tflite.QUANTIZATIONS
    assert (export.MIN_TOP1, export.MIN_COSINE) == (verify.MIN_TOP1, verify.MIN_COSINE)
    assert finetune.POOLINGS == classifier.POOLINGS
    defaults = QuickstartSettings()
    for key, value in vars(quickstart.QUICKSTART_DEFAULTS).items():
        assert getattr(defaults, key) == value, key


@pytest.mark.parametrize("line, native", [
    (NATIVE_LINE, True),
    ("E0000 00:00:1796188129.287148   25479 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n",
     True),
    ("W0102 03:04:05.678901   12345 some_file.cc:7] a warning\n", True),
    ("2024-01-02 03:04:05.678901: I tensorflow/core/platform/cpu_feature_guard.cc:182] This TensorFlow\n", True),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n", True),
    ("To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n", True),
    ("INFO keras_distil.training: step 10\n", False),
    ("/x.py:3: UserWarning: something the user should see\n", False),
    ("Traceback (most recent call last):\n", False),
])
def test_native_lines_are_told_from_python_output(line, native):
    assert is_native_chatter(line) is native


def test_native_lines_are_held_back_unless_debug():
    """Through main: a native line written to file descriptor 2 while the library is imported is held back,
    a Python line kept; ``--log-level DEBUG`` shows both (the import is stubbed: this needs no TensorFlow)."""
    code = f"""
import os, sys
import keras_distil_cli

def fake_import(func):
    os.write(2, {NATIVE_LINE.encode()!r})
    print("a python warning", file=sys.stderr)
    return (lambda args: 0), RuntimeError

keras_distil_cli.import_library = fake_import
print("QUIET", keras_distil_cli.main(["recipes"]), file=sys.stderr, flush=True)
print("DEBUG", keras_distil_cli.main(["--log-level", "DEBUG", "recipes"]), file=sys.stderr, flush=True)
"""
    done = _python(code, _env_without_quieting())
    assert done.returncode == 0, done.stderr
    quiet, debug = done.stderr.split("QUIET 0\n")
    assert quiet == "a python warning\n"
    assert debug == NATIVE_LINE + "a python warning\nDEBUG 0\n"


def test_a_command_prints_no_native_start_up_line_and_each_line_once(tmp_path):
    """The real thing, without TF_CPP_MIN_LOG_LEVEL: ``keras-distil recipes`` imports TensorFlow and lists
    its devices (where a machine without a GPU driver logs cuInit's failure), and prints its table only."""
    done = _python(LOAD_CONSOLE_SCRIPT + "; raise SystemExit(main(['recipes']))", _env_without_quieting(), tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines() + done.stderr.splitlines()
    assert not [line for line in lines if re.match(r"[IWEF]\d{4} ", line) or "absl::InitializeLog" in line], \
        done.stderr[-2000:]
    assert "tiny" in done.stdout
    assert len(lines) == len(set(lines)), lines


def test_tensorflow_log_lines_print_once_when_tensorflow_came_first():
    """``python -m keras_distil`` imports TensorFlow before the command line sets up logging, and TensorFlow
    then gives its logger a handler of its own: every line it logs came twice (``INFO:tensorflow:Assets
    written`` and ``INFO tensorflow: Assets written``)."""
    code = """
import sys
import tensorflow as tf
import keras_distil.cli.recipes as recipes  # the package first, as python -m keras_distil does
from keras_distil.cli import main

def run_recipes(args):
    tf.get_logger().info("Assets written to: somewhere")
    return 0

recipes.run_recipes = run_recipes
raise SystemExit(main(["recipes"]))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("Assets written to: somewhere") == 1, done.stderr[-2000:]
    assert "INFO tensorflow: Assets written to: somewhere" in done.stderr


# ---- compiled forwards: one trace for every batch shape, no retracing warning ----------------------

def _shaped_batches():
    return [make_batch(batch_size=b, seq_len=n, seed=i)
            for i, (b, n) in enumerate([(4, 8), (3, 12), (2, 16), (4, 10), (1, 14), (3, 9)])]


def test_evaluating_batches_of_several_shapes_warns_of_no_retracing(caplog):
    from keras_distil import build_mlm_model
    from keras_distil.evaluation import evaluate_models

    tf.keras.utils.set_random_seed(0)
    config = dict(TINY_MODEL, num_layers=1)
    models = {name: build_mlm_model(config) for name in ("teacher", "student", "other")}
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        report = evaluate_models(models, _shaped_batches(), "teacher", latency_runs=0, max_texts=0)
    assert report["data"]["batches"] == 6
    assert not [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]


def test_a_compiled_forward_traces_once_for_every_batch_shape():
    from keras_distil import build_mlm_model
    from keras_distil.evaluation.forward import CompiledForward, model_inputs

    model = build_mlm_model(dict(TINY_MODEL, num_layers=1))
    forward = CompiledForward(model)
    for batch in _shaped_batches():
        inputs = model_inputs(batch)
        np.testing.assert_allclose(forward(inputs)["logits"], model(inputs, training=False)["logits"], atol=1e-5)
    assert forward._compiled.experimental_get_tracing_count() == 1


# ---- convert: the real reason, in one line -----------------------------------------------------------

def test_convert_names_a_file_in_the_way_of_dst_in_one_line(tmp_path, capsys):
    """A file where DST's folder should be: one line saying so, exit 2, before the source is read (it used to
    say "cannot be written (File exists)" after loading the model)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    source = os.path.join(FIXTURES, "hf", "bert_mlm")
    for dst, why in ((blocker / "out", f"{blocker} is a file, not a folder"), (blocker, "a file, not a folder")):
        assert keras_distil_cli.main(["convert", source, str(dst), "--to", "hf"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"keras-distil convert: error: DST {dst}: "), err
        assert why in err[0] and "File exists" not in err[0], err


def test_the_console_script_and_the_packages_are_declared_in_setup_py():
    """The wheel carries keras_distil_cli and its console script runs it (tests/test_packaging.py installs
    the wheel; this is its quick half)."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = _python("import json, setuptools, sys; captured = {}; setuptools.setup = lambda **kw: captured.update(kw); "
                   f"sys.argv = ['setup.py']; exec(open({os.path.join(repo, 'setup.py')!r}).read()); "
                   "print(json.dumps({'packages': captured['packages'], "
                   "'scripts': captured['entry_points']['console_scripts']}))", cwd=repo)
    assert done.returncode == 0, done.stderr
    declared = json.loads(done.stdout)
    assert {"keras_distil", "keras_distil.cli", "keras_distil_cli"} <= set(declared["packages"])
    assert declared["scripts"] == ["keras-distil=keras_distil_cli:main"]
