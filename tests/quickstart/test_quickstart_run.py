"""The quickstart: stage caching (fake stages), settings and flags, and one tiny end-to-end run (slow)."""

import json
import os

import pytest
from helpers import REPO_ROOT

from keras_distil.config import ConfigError
from keras_distil.quickstart.stages import DONE, PENDING, Pipeline, Stage


class Recorder:
    """Fake stages that write one file and record each call."""

    def __init__(self):
        self.calls = []

    def stage(self, name, knobs=None, after=(), resumable=False):
        def run(folder, inputs):
            self.calls.append(name)
            path = os.path.join(folder, "out.txt")
            existed = os.path.exists(path)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"knobs": knobs, "inputs": sorted(inputs)}) + "\n")
            return {"paths": {"out": path}, "value": (knobs or {}).get("v"), "resumed": existed}

        return Stage(name, dict(knobs or {}), run, after=after, resumable=resumable)

    def chain(self, a=1, b=1, c=1):
        """a -> b -> c, plus d reading a only."""
        return [self.stage("a", {"v": a}), self.stage("b", {"v": b}, after=("a",)),
                self.stage("c", {"v": c}, after=("b",)), self.stage("d", {"v": 0}, after=("a",))]


def run_all(root, stages, fresh=False):
    pipeline = Pipeline(str(root), fresh=fresh, echo=None)
    for stage in stages:
        pipeline.run(stage)
    return pipeline.results


def test_rerun_skips_finished_stages(tmp_path):
    rec = Recorder()
    first = run_all(tmp_path, rec.chain())
    assert rec.calls == ["a", "b", "c", "d"] and not any(r.cached for r in first.values())
    second = run_all(tmp_path, rec.chain())
    assert rec.calls == ["a", "b", "c", "d"]  # nothing ran again
    assert all(r.cached for r in second.values())
    assert {n: r.outputs for n, r in second.items()} == {n: r.outputs for n, r in first.items()}
    assert {n: r.fingerprint for n, r in second.items()} == {n: r.fingerprint for n, r in first.items()}


def test_changed_knob_reruns_that_stage_and_its_dependents_only(tmp_path):
    rec = Recorder()
    run_all(tmp_path, rec.chain())
    rec.calls.clear()
    results = run_all(tmp_path, rec.chain(b=2))
    assert rec.calls == ["b", "c"]  # a and d (which reads a only) are reused
    assert results["b"].outputs["value"] == 2 and not results["c"].cached and results["d"].cached
    rec.calls.clear()
    run_all(tmp_path, rec.chain(a=5, b=2))
    assert rec.calls == ["a", "b", "c", "d"]
    # the old outputs were removed before the rerun: one line per file, not appended
    with open(tmp_path / "b" / "out.txt", encoding="utf-8") as f:
        assert len(f.readlines()) == 1


def test_fresh_reruns_everything(tmp_path):
    rec = Recorder()
    run_all(tmp_path, rec.chain())
    rec.calls.clear()
    results = run_all(tmp_path, rec.chain(), fresh=True)
    assert rec.calls == ["a", "b", "c", "d"] and not any(r.cached for r in results.values())


def test_missing_output_or_broken_marker_reruns(tmp_path):
    rec = Recorder()
    run_all(tmp_path, rec.chain())
    rec.calls.clear()
    os.remove(tmp_path / "c" / "out.txt")
    (tmp_path / "a" / DONE).write_text("{not json", encoding="utf-8")
    run_all(tmp_path, rec.chain())
    # a's marker is unreadable: a reruns, and its fingerprint is the same, so b and d are still valid
    assert rec.calls == ["a", "c"]


def test_interrupted_resumable_stage_continues_in_place(tmp_path):
    """A stage killed before its done marker: a resumable one keeps its folder (the runtime resumes from
    its checkpoints), a plain one starts from an empty folder; a changed knob always starts empty."""
    rec = Recorder()
    train = rec.stage("train", {"v": 1}, resumable=True)
    plain = rec.stage("plain", {"v": 1})
    run_all(tmp_path, [train, plain])
    for name in ("train", "plain"):
        os.remove(tmp_path / name / DONE)  # as if killed after writing out.txt
        assert (tmp_path / name / PENDING).exists()
    results = run_all(tmp_path, [train, plain])
    assert results["train"].outputs["resumed"] is True
    assert results["plain"].outputs["resumed"] is False
    os.remove(tmp_path / "train" / DONE)
    results = run_all(tmp_path, [rec.stage("train", {"v": 2}, resumable=True)])
    assert results["train"].outputs["resumed"] is False


def test_stage_order_is_checked(tmp_path):
    rec = Recorder()
    with pytest.raises(RuntimeError, match="runs after a"):
        Pipeline(str(tmp_path), echo=None).run(rec.stage("b", after=("a",)))


def test_failed_stage_leaves_no_done_marker(tmp_path):
    def boom(folder, inputs):
        raise ValueError("boom")

    with pytest.raises(ValueError):
        Pipeline(str(tmp_path), echo=None).run(Stage("x", {}, boom))
    assert not (tmp_path / "x" / DONE).exists()


# ---- settings and flags ------------------------------------------------------------------------

def _args(*argv):
    import argparse

    from keras_distil.cli.quickstart import add_quickstart_parser

    parser = argparse.ArgumentParser()
    add_quickstart_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["quickstart", *argv])


def test_flags_become_settings(tmp_path):
    from keras_distil.cli.quickstart import settings_from_args

    s = settings_from_args(_args("--out", str(tmp_path), "--teacher-steps", "7", "--student-steps", "5",
                                 "--no-export", "--set", "hidden_size=64", "--set", "bucket_boundaries=null"))
    assert (s.out, s.teacher_steps, s.student_steps, s.export, s.hidden_size, s.bucket_boundaries) == \
        (str(tmp_path), 7, 5, False, 64, None)
    with pytest.raises(ConfigError, match="unknown knob hidden"):
        settings_from_args(_args("--set", "hidden=3"))
    with pytest.raises(ConfigError, match="hidden_size takes a int"):
        settings_from_args(_args("--set", "hidden_size=wide"))
    with pytest.raises(ConfigError, match="--student-steps"):
        settings_from_args(_args("--student-steps", "0"))


def test_budget_scales_the_training_steps():
    from keras_distil.quickstart.run import QuickstartSettings, steps_for_budget

    default = QuickstartSettings()
    short, long = steps_for_budget(12), steps_for_budget(40)
    assert short["teacher_steps"] < default.teacher_steps < long["teacher_steps"]
    assert short["teacher_steps"] / short["student_steps"] == pytest.approx(
        default.teacher_steps / default.student_steps, rel=0.05)
    with pytest.raises(ConfigError, match="budget-minutes"):
        steps_for_budget(1)


def test_student_and_baseline_get_the_same_steps_batch_and_data():
    from keras_distil.quickstart.run import QuickstartSettings, baseline_recipe, distill_recipe

    s = QuickstartSettings(teacher_layers=6)
    base, dist = baseline_recipe(s), distill_recipe(s)
    assert base["model"]["num_layers"] == s.student_num_layers == 3
    assert base["data"] == dist["data"]
    assert base["train"]["steps"] == dist["train"]["steps"] == s.student_steps
    assert dist["distill"]["ce_positions"] == "masked"


def _ablation_module():
    import importlib.util

    path = os.path.join(REPO_ROOT, "examples", "ablation.py")
    spec = importlib.util.spec_from_file_location("ablation_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_student_stages_carry_student_init_in_their_recipe(tmp_path):
    """The ablation's variants are distill-section changes (student_init included) run by the public
    distill(): each stage's knobs are a valid recipe, and the init decides the stage's fingerprint."""
    from keras_distil.quickstart.run import QuickstartSettings, student_stage, with_paths
    from keras_distil.quickstart.stages import fingerprint

    settings = QuickstartSettings()
    default = student_stage(settings)
    assert default.name == "distill" and default.after == ("corpus", "vocab", "teacher") and default.resumable
    assert default.knobs["distill"]["student_init"] == "teacher" and "teacher" in default.title
    stages = {key: student_stage(settings, f"ablation_{key}", **changes)
              for key, (_, changes, _) in _ablation_module().VARIANTS.items()}
    assert stages["random_init"].knobs["distill"]["student_init"] == "random"
    assert "randomly initialised" in stages["random_init"].title
    assert {k: s.knobs["distill"]["student_init"] for k, s in stages.items() if k != "random_init"} == \
        {"no_ce": "teacher", "no_cos": "teacher", "no_mlm": "teacher"}
    for stage in (default, *stages.values()):
        recipe = with_paths(stage.knobs, str(tmp_path), "train.txt", "vocab.txt", teacher="preset")
        assert recipe.distill.to_dict() == {**recipe.distill.to_dict(), **stage.knobs["distill"]}
    random_default = student_stage(settings, student_init="random")
    assert fingerprint("distill", random_default.knobs, {}) != fingerprint("distill", default.knobs, {})


def test_ablation_rows_against_the_full_student():
    ablation = _ablation_module()
    models = {"distill": {"masked_lm_accuracy": 0.5, "perplexity": 20.0}}
    for i, key in enumerate(ablation.VARIANTS):
        models[f"ablation_{key}"] = {"masked_lm_accuracy": 0.4 + 0.01 * i, "perplexity": 30.0}
    rows = ablation.ablation_rows({"models": models})
    assert [r["key"] for r in rows] == ["distill", *ablation.VARIANTS]
    random_row = rows[1 + list(ablation.VARIANTS).index("random_init")]
    assert random_row["paper_delta_glue"] == -3.69
    assert random_row["delta_accuracy_points"] == pytest.approx(100 * (random_row["masked_lm_accuracy"] - 0.5))


# ---- end to end ------------------------------------------------------------------------------------

TINY = ["--corpus-max-documents", "150", "--teacher-steps", "6", "--student-steps", "4",
        "--set", "vocab_size=400", "--set", "vocab_max_documents=450", "--set", "vocab_max_unique_words=1500",
        "--set", "hidden_size=32", "--set", "teacher_layers=2", "--set", "num_heads=2",
        "--set", "intermediate_size=64", "--set", "max_len=32", "--set", "batch_size=8",
        "--set", "max_predictions_per_seq=5", "--set", "bucket_boundaries=null", "--set", "eval_batches=2", "--set", "shuffle_buffer=200",
        "--set", "latency_runs=2"]


@pytest.mark.slow
def test_quickstart_end_to_end_tiny(tmp_path, capsys):
    from keras_distil.cli.quickstart import main

    out = tmp_path / "qs"
    assert main(["--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    for line in ("teacher", "distilled student", "scratch baseline", "unigram (reference)", "report:", "tflite:"):
        assert line in printed
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "| distilled student |" in report and "![loss curves](loss_curves.png)" in report
    assert (out / "report" / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluation = json.loads((out / "evaluate" / "evaluation.json").read_text(encoding="utf-8"))
    models = evaluation["models"]
    assert set(models) == {"teacher", "distill", "baseline"}
    assert models["distill"]["params"] == models["baseline"]["params"] < models["teacher"]["params"]
    assert models["distill"]["vs_teacher"]["param_ratio"] < 1
    assert os.path.isfile(out / "export" / "student" / "1" / "saved_model.pb")
    assert os.path.isfile(out / "export" / "student" / "tflite" / "1" / "model.tflite")

    # a rerun reuses every stage (no stage runs again: each says so); a changed evaluation knob reruns evaluate
    # and report only
    assert main(["--out", str(out), *TINY]) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(["--out", str(out), *TINY, "--set", "eval_batches=1"]) == 0
    printed = capsys.readouterr().out
    for name in ("corpus", "vocab", "teacher", "distill", "baseline", "export"):
        assert f"{name}: up to date" in printed
    for name in ("evaluate", "report"):
        assert f"{name}: up to date" not in printed
