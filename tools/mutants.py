"""A small mutation tester for the code that decides whether distillation is right (``make mutants``).

Each mutant below is one deliberate, plausible bug (an operator swap, an off-by-one, a wrong normaliser, the
temperature on one side, keep and random swapped, a per-replica instead of a global sum, ...) in
keras_distil/losses.py, data/masking.py, distiller.py or training/step.py, with the *fast* tests (none marked
slow) that should catch it. For every mutant the tool

1. copies the package and the tests into a temporary workspace (once per run; the repository is never
   written: other sessions may be running tests on it meanwhile),
2. writes the mutated file there (the snippet must occur exactly once, else the mutant is reported
   ``stale``), runs ``python -m pytest -x -q -m 'not slow' <its tests>`` on the workspace copy with a
   timeout, and puts the pristine file back, checked by its SHA-256 before the next mutant,
3. records ``killed`` (by the first failing test), ``timeout``, ``error`` (the mutant broke collection) or
   ``survived``.

It prints one table row per mutant and the survival rate. First every distinct test selection runs once on
the unmutated copy, exactly as the mutants will run it: a failing baseline stops the run (a survival rate
would mean nothing). Mapped tests that no longer exist (renamed, moved) are dropped and listed as missing.

Why hand-written mutants rather than mutmut / cosmic-ray (both install from PyPI and run here; tried with
mutmut 3.8.1 and cosmic-ray 8.7.0): they generate hundreds of mutants (cosmic-ray: 962 for these four files;
mutmut: 160 for losses.py alone, 5 surviving, among them ``axis=-1`` -> ``axis=None`` in both log_softmax
calls, which tf.nn.log_softmax treats alike), mostly string and number noise that would take hours of the step
tests on two cores, and neither can express the bugs that matter here (two branches swapped, a call removed,
the normaliser of one term taken from another key). cosmic-ray also mutates the working tree in place.
mutmut's survivor 1e-8 -> 1.00000001 in the cosine's norm clamp became L08 below.

Usage::

    python tools/mutants.py                 # every mutant (about 30-40 minutes on two busy cores)
    python tools/mutants.py --list          # the mutants and their tests, nothing run
    python tools/mutants.py --only M01 D01  # some of them
    python tools/mutants.py --json out.json # also write the results
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIED = ("keras_distil", "tests", "pyproject.toml", "setup.py")
DEFAULT_TIMEOUT = 600  # seconds per mutant (a hung mutant counts as killed, "timeout")

# ---- the fast tests each file's mutants run (cheapest first: -x stops at the first failure) -----------------
# Few distinct selections: each one is also run once unmutated (the baseline), exactly as the mutants run it.
LOSSES = ["tests/test_losses.py"]
MASKING = ["tests/data/test_data_masking.py"]
DISTILLER = ["tests/test_distiller.py::test_loss_terms_match_numpy",
             "tests/test_sentence_terms.py::test_sentence_terms_match_numpy",
             "tests/test_distiller.py::test_the_teacher_runs_in_inference_mode_even_with_dropout",
             "tests/test_step_terms_numpy.py"]
STEP = ["tests/training/test_training_step.py", "tests/test_step_terms_numpy.py"]
# First in its process: after other training tests in the same process its first mixed_float16 step can
# overflow (grad_norm inf), an order dependence of that test, not a mutant's doing.
MIXED = ["tests/training/test_training.py::test_mixed_precision_trains_with_float32_losses"]


@dataclasses.dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository root
    find: str  # exact source text, which must occur exactly once
    replace: str
    what: str
    tests: tuple[str, ...]


def m(id, path, find, replace, what, tests):
    return Mutant(id, path, find, replace, what, tuple(tests))


L, K, D, S = "keras_distil/losses.py", "keras_distil/data/masking.py", "keras_distil/distiller.py", \
    "keras_distil/training/step.py"

MUTANTS = [
    # ---- losses.py
    m("L01", L, "tf.math.divide_no_nan(tf.reduce_sum(values * weights), tf.reduce_sum(weights))",
      "tf.math.divide_no_nan(tf.reduce_sum(values * weights), tf.reduce_sum(tf.cast(weights > 0, tf.float32)))",
      "weighted mean divided by the count of non-zero weights, not their sum", LOSSES),
    m("L02", L, "tf.math.divide_no_nan(tf.reduce_sum(values * weights), tf.reduce_sum(weights))",
      "tf.reduce_mean(values * weights)", "weighted mean over every token (padding counted)", LOSSES),
    m("L03", L, "log_p_student = tf.nn.log_softmax(_f32(student_logits) / t, axis=-1)",
      "log_p_student = tf.nn.log_softmax(_f32(student_logits), axis=-1)",
      "temperature on the teacher side only", LOSSES),
    m("L04", L, "return (t * t) * kl", "return kl", "soft-target term without the T^2 factor", LOSSES),
    m("L05", L, "return (t * t) * kl", "return t * kl", "soft-target term scaled by T instead of T^2", LOSSES),
    m("L06", L, "kl = tf.reduce_sum(tf.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)",
      "kl = tf.reduce_sum(tf.exp(log_p_student) * (log_p_student - log_p_teacher), axis=-1)",
      "KL direction reversed: KL(student || teacher)", LOSSES),
    m("L07", L, "log_p_teacher = tf.nn.log_softmax(_f32(teacher_logits) / t, axis=-1)",
      "log_p_teacher = tf.math.log(tf.nn.softmax(_f32(teacher_logits) / t, axis=-1))",
      "log(softmax) instead of log_softmax (overflows on large logits)", LOSSES),
    m("F01", L, "log_q = tf.nn.log_softmax(s / t, axis=-1)", "log_q = tf.nn.log_softmax(s, axis=-1)",
      "fused terms: temperature on the teacher side only", LOSSES),
    m("F02", L, "kl = (t * t) * tf.reduce_sum(p_teacher", "kl = tf.reduce_sum(p_teacher",
      "fused terms: soft targets without the T^2 factor", LOSSES),
    m("F03", L, "d = (d_kl[..., None] * t) *", "d = d_kl[..., None] *",
      "fused terms: the soft targets' gradient without its factor T", LOSSES),
    m("F04", L, "(tf.exp(log_q1) - onehot)", "(tf.exp(log_q1) + onehot)",
      "fused terms: the cross-entropy's gradient with the label's sign flipped", LOSSES),
    m("F05", L, "ce = -tf.gather(log_q1, labels", "ce = -tf.gather(log_q, labels",
      "fused terms: the MLM loss at the soft targets' temperature", LOSSES),
    m("L08", L, "def cosine_distance_per_token(student_hidden, teacher_hidden, epsilon=1e-8):",
      "def cosine_distance_per_token(student_hidden, teacher_hidden, epsilon=1.0):",
      "cosine norms clamped at 1 instead of 1e-8 (found by mutmut: 1e-8 -> 1.00000001)", LOSSES),
    m("L09", L, "return 1.0 - dot / norms", "return dot / norms", "cosine similarity instead of distance", LOSSES),
    m("L10", L, "return tf.reduce_mean(tf.square(_f32(student_values) - _f32(teacher_values)), axis=-1)",
      "return tf.reduce_sum(tf.square(_f32(student_values) - _f32(teacher_values)), axis=-1)",
      "MSE summed over the last axis instead of averaged", LOSSES),
    m("L11", L, "def _f32(x):\n    return tf.cast(x, tf.float32)", "def _f32(x):\n    return x",
      "losses computed in the input precision (bfloat16), not float32", LOSSES),
    # ---- data/masking.py
    m("M01", K, "tf.where(action < spec.word_mask + spec.word_keep, originals, random_ids))",
      "tf.where(action < spec.word_mask + spec.word_rand, originals, random_ids))",
      "PLANTED (a): keep and random swapped in the 80/10/10 choice", MASKING),
    m("M02", K, "return tf.cast(tf.reshape(tf.where(probabilities > 0), [-1]), tf.int32)",
      "return tf.range(tf.size(probabilities), dtype=tf.int32)",
      "random replacements drawn from the whole vocabulary, specials included", MASKING),
    m("M03", K, "tf.shape(positions), random_seed, maxval=tf.size(candidates), dtype=tf.int32))",
      "tf.shape(positions), random_seed, maxval=tf.size(candidates) - 1, dtype=tf.int32))",
      "off-by-one: the last candidate is never a random replacement", MASKING),
    m("M04", K, "tf.shape(positions), random_seed, maxval=tf.size(candidates), dtype=tf.int32))",
      "tf.shape(positions), action_seed, maxval=tf.size(candidates), dtype=tf.int32))",
      "one seed for the 80/10/10 choice and the random token: the two are correlated", MASKING),
    m("M05", K, "target = tf.clip_by_value(mask_prop * candidates, tf.minimum(candidates, 1.0), float(max_predictions))",
      "target = tf.clip_by_value(tf.math.ceil(mask_prop * candidates), tf.minimum(candidates, 1.0), float(max_predictions))",
      "target count rounded up (mask rate biased upwards)", MASKING),
    m("M06", K, "target = tf.clip_by_value(mask_prop * candidates, tf.minimum(candidates, 1.0), float(max_predictions))",
      "target = tf.clip_by_value(mask_prop * candidates, 0.0, float(max_predictions))",
      "no minimum of one prediction per sequence", MASKING),
    m("M07", K, "target = tf.clip_by_value(mask_prop * candidates, tf.minimum(candidates, 1.0), float(max_predictions))",
      "target = tf.maximum(mask_prop * candidates, tf.minimum(candidates, 1.0))",
      "max_predictions_per_seq not applied to the target (truncated afterwards: early positions favoured)",
      MASKING),
    m("M08", K, "weights = np.maximum(counts, 1.0) ** -smoothing", "weights = np.maximum(counts, 1.0) ** smoothing",
      "smoothing exponent sign flipped (frequent tokens favoured)", MASKING),
    m("M09", K, "    weights[list(special_ids)] = 0.0\n", "",
      "special tokens keep a selection weight", MASKING),
    m("M10", K, "weights = tf.gather(probabilities, token_ids) * tf.cast(padding_mask, tf.float32)",
      "weights = tf.gather(probabilities, token_ids)", "padding not excluded from selection", MASKING),
    m("M11", K, "chosen = tf.math.ceil(cumulative - offset) > tf.math.ceil(previous - offset)",
      "chosen = tf.math.ceil(cumulative - offset) >= tf.math.ceil(previous - offset)",
      "systematic sampling comparison > -> >=", MASKING),
    m("M12", K, "_CAP_ITERATIONS = 8", "_CAP_ITERATIONS = 1",
      "one capping round: capped tokens' excess not redistributed", MASKING),
    m("M13", K, '"mask_ids": originals * used_int,', '"mask_ids": replaced * used_int,',
      "labels are the replaced tokens, not the originals", MASKING),
    # ---- distiller.py
    m("D01", D, 'else (mask_weights, "masked")', 'else (mask_weights, "tokens")',
      "PLANTED (b): soft targets at masked slots normalised by the token count", DISTILLER),
    # The fused branch (DistilBERT's objective: soft targets and MLM at the masked positions) ends with the MLM
    # term before the "elif"; the separate MLM term (ce_positions="all", or no soft targets) follows its gather.
    m("D02", D, 'terms["mlm"] = _globally_weighted_mean(ce, mask_weights, totals.get("masked"))\n        elif',
      'terms["mlm"] = _globally_weighted_mean(ce, mask_weights, totals.get("tokens"))\n        elif',
      "MLM term normalised by the token count (fused branch)", DISTILLER),
    m("D12", D, 'mlm_cross_entropy_per_token(batch["mask_ids"], logits)\n'
      '            terms["mlm"] = _globally_weighted_mean(ce, mask_weights, totals.get("masked"))',
      'mlm_cross_entropy_per_token(batch["mask_ids"], logits)\n'
      '            terms["mlm"] = _globally_weighted_mean(ce, mask_weights, totals.get("tokens"))',
      "MLM term normalised by the token count (separate branch)", DISTILLER),
    m("D03", D, 'terms["cos"] = _globally_weighted_mean(dist, padding, totals.get("tokens"))',
      'terms["cos"] = _globally_weighted_mean(dist, padding, totals.get("masked"))',
      "cosine term normalised by the masked-slot count", DISTILLER),
    m("D04", D, "        total = global_sum(tf.reduce_sum(weights))",
      "        total = tf.reduce_sum(weights)",
      "each replica divides by its local weight (sum of per-replica means)", DISTILLER),
    m("D05", D, "return tf.add_n([getattr(self.config, f\"alpha_{name}\") * value for name, value in terms.items()])",
      "return tf.add_n([value for name, value in terms.items()])", "total loss ignores the alphas", DISTILLER),
    m("D06", D, "kl = losses.soft_target_kl_per_token(student_out[\"logits\"], teacher_out[\"logits\"], cfg.temperature)",
      "kl = losses.soft_target_kl_per_token(student_out[\"logits\"], teacher_out[\"logits\"], 1.0)",
      "soft targets at T = 1 whatever the config (separate branch)", DISTILLER),
    m("D13", D, 'batch["mask_ids"], cfg.temperature)', 'batch["mask_ids"], 1.0)',
      "soft targets at T = 1 whatever the config (fused branch)", DISTILLER),
    m("D07", D, "return tf.nest.map_structure(tf.stop_gradient, out)", "return out",
      "missing stop_gradient on the teacher's outputs", DISTILLER),
    m("D08", D, "out = self.teacher(inputs, training=False, return_logits=self.config.needs_teacher_logits,",
      "out = self.teacher(inputs, training=True, return_logits=self.config.needs_teacher_logits,",
      "teacher run in training mode (dropout on)", DISTILLER),
    m("D09", D, "scale = float(num_replicas())", "scale = 1.0",
      "fit()'s logged terms not scaled by the replica count", DISTILLER),
    m("D10", D, '"sequences": tf.reduce_sum(tf.cast(tf.reduce_max(padding, axis=1) > 0, tf.float32))}',
      '"sequences": tf.reduce_sum(tf.cast(tf.reduce_max(padding, axis=1) >= 0, tf.float32))}',
      "all-padding rows counted as sequences (step totals)", DISTILLER),
    m("D11", D, "sequences = tf.cast(tf.reduce_max(padding, axis=1) > 0, tf.float32)",
      "sequences = tf.ones_like(padding[:, 0])",
      "all-padding rows weigh in the sentence terms", DISTILLER),
    # ---- training/step.py
    m("S01", S, "        return global_sum(totals)", "        return totals",
      "count totals not all-reduced over replicas", STEP),
    m("S02", S, "        grads, total, terms = self.model.compute_gradients(batch, totals)",
      "        grads, total, terms = self.model.compute_gradients(batch, None)",
      "each micro-batch normalised by its own weights (mean of micro-batch means)", STEP),
    m("S03", S, "logs[\"grad_norm\"] = tf.linalg.global_norm(grads) / loss_scale(self.optimizer)",
      "logs[\"grad_norm\"] = tf.linalg.global_norm(grads)",
      "logged gradient norm not unscaled (mixed_float16 loss scale)",
      MIXED + STEP),
    m("S04", S, "                acc.assign(tf.zeros_like(acc))", "                pass",
      "accumulators not reset after the update", STEP),
    m("S05", S, "            self.totals[key].assign(value)", "            self.totals[key].assign_add(value)",
      "count totals accumulated across optimizer steps", STEP),
    m("S06", S, "        grads, logs = global_sum((grads, logs))", "        logs = global_sum(logs)",
      "gradients not summed over replicas", STEP),
]

# Mutants argued equivalent (no test can kill them): id -> why. Reported apart from the survival rate.
EQUIVALENT = {
    "D07": "the teacher runs before and outside the GradientTape (Distiller.compute_gradients), and only the "
           "student's variables are differentiated, so its outputs are constants to the tape with or without "
           "tf.stop_gradient.",
    "M04": "equivalent in distribution: TF's stateless int32 draw is independent of the float32 draw of the "
           "same seed (measured: 2M draws, replacement ids given action >= 0.9, chi2/dof 0.98, 1.06, 0.99 for "
           "20, 995, 30517 candidates), so no statistic of the outputs tells the two seeds apart; only the "
           "exact ids for a given seed change.",
}


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Workspace:
    """A temporary copy of the package and tests; the only place files are ever written."""

    def __init__(self, source_root: str = ROOT):
        self.root = tempfile.mkdtemp(prefix="keras-distil-mutants-")
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
        for name in COPIED:
            src = os.path.join(source_root, name)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(self.root, name), ignore=ignore)
            elif os.path.exists(src):
                shutil.copy2(src, os.path.join(self.root, name))
        self.pristine = {}

    def path(self, rel: str) -> str:
        full = os.path.realpath(os.path.join(self.root, rel))
        if not full.startswith(os.path.realpath(self.root) + os.sep):
            raise RuntimeError(f"refusing to touch {full}: outside the workspace")
        return full

    def read(self, rel: str) -> str:
        with open(self.path(rel), encoding="utf-8") as f:
            return f.read()

    def write(self, rel: str, text: str) -> None:
        with open(self.path(rel), "w", encoding="utf-8") as f:
            f.write(text)

    def remember(self, rel: str) -> None:
        if rel not in self.pristine:
            self.pristine[rel] = (self.read(rel), sha256(self.path(rel)))

    def restore(self, rel: str) -> None:
        text, digest = self.pristine[rel]
        self.write(rel, text)
        if sha256(self.path(rel)) != digest:
            raise RuntimeError(f"{rel}: the pristine copy could not be restored (hash differs)")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


_COLLECTED: set[str] = set()


def collect(ws: Workspace, tests) -> None:
    """The test ids pytest collects from the mapped files (tests are renamed and moved while other work goes
    on: a mapped test that no longer exists is dropped and reported, not run as an error)."""
    files = sorted({t.split("::")[0] for t in tests if os.path.exists(os.path.join(ws.root, t.split("::")[0]))})
    env = dict(os.environ, PYTHONPATH=ws.root, PYTHONDONTWRITEBYTECODE="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-m", "not slow", *files], cwd=ws.root, env=env, capture_output=True, text=True)
    _COLLECTED.update(line.strip() for line in proc.stdout.splitlines() if "::" in line)


def existing(tests, root: str) -> list[str]:
    """The mapped tests that exist (a file, a test, or a parametrized test's name without its ``[...]``)."""
    def found(t):
        if "::" not in t:
            return os.path.exists(os.path.join(root, t)) and any(c.startswith(t + "::") for c in _COLLECTED)
        return any(c == t or c.startswith(t + "[") for c in _COLLECTED)
    return [t for t in tests if found(t)]


def run_tests(ws: Workspace, tests: list[str], timeout: float) -> dict:
    """``{"status": passed|failed|error|timeout|no tests, "by": first failing test, "seconds"}``."""
    env = dict(os.environ, PYTHONPATH=ws.root, PYTHONDONTWRITEBYTECODE="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("KERAS_DISTIL_REQUIRE_EXTRAS", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-rfE",
           "--no-header", *tests]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ws.root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "by": f"> {timeout:.0f} s", "seconds": time.monotonic() - start}
    seconds = time.monotonic() - start
    out = proc.stdout + proc.stderr
    first = re.search(r"^(FAILED|ERROR) (\S+)", out, re.M)
    by = first.group(2) if first else ""
    status = {0: "passed", 1: "failed", 5: "no tests"}.get(proc.returncode, "error")
    if status == "error" and not by:
        by = (out.strip().splitlines() or ["?"])[-1][:100]
    return {"status": status, "by": by, "seconds": seconds, "output": out}


def apply(ws: Workspace, mutant: Mutant) -> int | None:
    """Write the mutant into the workspace; its 1-based line, or None when the snippet is not found once."""
    ws.remember(mutant.path)
    text = ws.pristine[mutant.path][0]
    if text.count(mutant.find) != 1:
        return None
    ws.write(mutant.path, text.replace(mutant.find, mutant.replace))
    return text[:text.index(mutant.find)].count("\n") + 1


def short(test: str) -> str:
    return test.replace("tests/", "").replace(".py::", "::")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests; run nothing")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per mutant")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the workspace (its path is printed)")
    parser.add_argument("--root", default=ROOT, help="the checkout to copy (default: this one), e.g. another "
                                                     "tree to compare the mutants killed before and after a change")
    args = parser.parse_args(argv)

    mutants = [x for x in MUTANTS if not args.only or x.id in args.only]
    if args.only and len(mutants) != len(set(args.only)):
        parser.error(f"unknown mutant id(s): {sorted(set(args.only) - {x.id for x in MUTANTS})}")
    if args.list:
        for x in mutants:
            print(f"{x.id}  {x.path}  {x.what}\n      tests: {' '.join(x.tests)}")
        return 0

    sources = sorted({x.path for x in mutants})
    root = os.path.abspath(args.root)
    before = {p: sha256(os.path.join(root, p)) for p in sources}
    ws = Workspace(root)
    print(f"workspace: {ws.root}", flush=True)
    results = []
    try:
        collect(ws, [t for x in mutants for t in x.tests])
        if not args.no_baseline:
            selections = list(dict.fromkeys(tuple(existing(x.tests, ws.root)) for x in mutants))
            for selection in filter(None, selections):
                base = run_tests(ws, list(selection), args.timeout * 2)
                print(f"baseline, unmutated: {base['status']} in {base['seconds']:.0f} s: {' '.join(map(short, selection))}",
                      flush=True)
                if base["status"] != "passed":
                    print(base.get("output", "")[-4000:])
                    print("the baseline fails: fix the tests first, no survival rate is meaningful", file=sys.stderr)
                    return 2
        for x in mutants:
            tests = existing(x.tests, ws.root)
            missing = sorted(set(x.tests) - set(tests))
            line = apply(ws, x)
            try:
                if line is None:
                    row = {"status": "stale", "by": "snippet not found exactly once", "seconds": 0.0}
                elif not tests:
                    row = {"status": "no tests", "by": "none of its test files exists", "seconds": 0.0}
                else:
                    row = run_tests(ws, tests, args.timeout)
            finally:
                ws.restore(x.path)
            result = {"passed": "survived", "failed": "killed"}.get(row["status"], row["status"])
            if result == "survived" and x.id in EQUIVALENT:
                result = "equivalent"
            entry = {"id": x.id, "file": x.path, "line": line, "what": x.what, "result": result, "by": row["by"],
                     "seconds": round(row["seconds"], 1), "tests": tests, "missing_tests": missing}
            results.append(entry)
            print(f"{x.id}  {os.path.basename(x.path)}:{line}  {result:<10} {row['seconds']:6.0f} s  "
                  f"{short(row['by'])}", flush=True)
    finally:
        if args.keep:
            print(f"workspace kept: {ws.root}")
        else:
            ws.remove()
        for p in sources:  # never written by this tool; a change means someone edited it meanwhile
            if sha256(os.path.join(root, p)) != before[p]:
                print(f"note: {p} changed in the repository during the run (not by this tool)", file=sys.stderr)

    print_table(results)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"mutants": results, "equivalent": EQUIVALENT}, f, indent=2)
    return 0


def print_table(results: list[dict]) -> None:
    print("\n| id | file:line | mutation | result | killed by / time |")
    print("|---|---|---|---|---|")
    for r in results:
        by = short(r["by"]) if r["result"] in ("killed", "error", "timeout") else ""
        note = EQUIVALENT.get(r["id"], "") if r["result"] == "equivalent" else ""
        missing = f" (missing: {', '.join(r['missing_tests'])})" if r["missing_tests"] else ""
        print(f"| {r['id']} | {os.path.relpath(r['file'], 'keras_distil')}:{r['line']} | {r['what']} | "
              f"{r['result']} | {by or note} {r['seconds']:.0f} s{missing} |")
    counted = [r for r in results if r["result"] in ("killed", "survived", "timeout", "error")]
    survived = [r["id"] for r in counted if r["result"] == "survived"]
    equivalent = [r["id"] for r in results if r["result"] == "equivalent"]
    other = [f"{r['id']} {r['result']}" for r in results if r["result"] in ("stale", "no tests")]
    rate = len(survived) / len(counted) if counted else float("nan")
    print(f"\nsurvived {len(survived)} of {len(counted)} non-equivalent mutants: survival rate {rate:.1%}"
          + (f" ({', '.join(survived)})" if survived else ""))
    if equivalent:
        print(f"equivalent (argued in tools/mutants.py, not counted): {', '.join(equivalent)}")
    if other:
        print(f"not run: {', '.join(other)}")


if __name__ == "__main__":
    sys.exit(main())
