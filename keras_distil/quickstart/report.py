"""The quickstart's report: a results table (console and Markdown), loss curves read back from the runs'
TensorBoard logs (PNG, matplotlib's Agg backend: no display needed) and the stage timings.

The curves are the masked-LM term of each run (``loss/mlm``: the cross-entropy of the true tokens at the
masked positions), which is the one quantity teacher, distilled student and baseline all optimise, so
the three lines are comparable; the student's total loss (``loss/total``) is drawn dashed beside it.
"""

from __future__ import annotations

import glob
import os

from keras_distil.errors import KerasDistilError
from keras_distil.files import atomic_write_bytes

ROWS = (("teacher", "teacher"), ("distill", "distilled student"), ("baseline", "scratch baseline"))


# ---- TensorBoard logs --------------------------------------------------------------------------

def read_scalars(logdir: str, tags: tuple[str, ...] = ("loss/mlm", "loss/total")) -> dict[str, list]:
    """``{tag: [(step, value), ...]}`` from the event files of ``logdir`` (sorted by step, last write wins)."""
    import tensorflow as tf

    series: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag in series:
                    number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                              else float(value.simple_value))
                    series[value.tag][int(event.step)] = number
    return {tag: sorted(points.items()) for tag, points in series.items() if points}


class MissingExtraError(KerasDistilError, ImportError):
    """An optional dependency of the quickstart is not installed; the message names the pip command."""


def require_matplotlib():
    """matplotlib, set to its Agg backend (no display). It is the ``quickstart`` extra, not a dependency of
    the library: missing, :class:`MissingExtraError` says how to install it (checked before the first stage,
    so that a run does not train for minutes and then fail at its report)."""
    try:
        import matplotlib
    except ImportError as e:
        raise MissingExtraError(f"the quickstart report draws its loss curves with matplotlib, which is not "
                                f"installed ({e}): pip install 'keras-distil[quickstart]'") from None
    matplotlib.use("Agg")
    return matplotlib


def plot_curves(curves: dict[str, dict[str, list]], path: str, title: str = "masked-LM loss") -> str:
    """Draw ``{run label: {tag: points}}`` into a PNG at ``path`` (written atomically)."""
    import io

    require_matplotlib()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, series in curves.items():
        if "loss/mlm" in series:
            steps, values = zip(*series["loss/mlm"])
            line, = ax.plot(steps, values, label=f"{label}: MLM loss")
            if label == "distilled student" and "loss/total" in series:
                steps, values = zip(*series["loss/total"])
                ax.plot(steps, values, linestyle="--", color=line.get_color(), alpha=0.6,
                        label=f"{label}: total (weighted ce + mlm + cos)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


# ---- tables ------------------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def results_rows(evaluation: dict) -> list[tuple[str, ...]]:
    """Header + one row per model (and the unigram reference) of the held-out evaluation."""
    models = evaluation["models"]
    rows = [("model", "layers", "params", "MLM acc", "perplexity", "retention", "ms/batch", "speed-up")]
    for key, label in ROWS:
        if key not in models:
            continue
        m = models[key]
        vs = m.get("vs_teacher", {})
        retention = vs.get("accuracy_retention", 1.0 if key == "teacher" else None)
        speedup = vs.get("speedup", 1.0 if key == "teacher" else None)
        rows.append((label, str(m.get("layers", "-")), f"{m['params']:,}", _fmt(m["masked_lm_accuracy"], ".4f"),
                     _fmt(m["perplexity"], ".1f"), _fmt(retention, ".3f"),
                     _fmt(None if m["latency_s"] is None else 1000 * m["latency_s"], ".1f"), _fmt(speedup, ".2f")))
    unigram = evaluation.get("unigram")
    if unigram:
        rows.append(("unigram (reference)", "-", "-", _fmt(unigram["masked_lm_accuracy"], ".4f"),
                     _fmt(unigram["perplexity"], ".1f"), "-", "-", "-"))
    return rows


def plain_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def headline(evaluation: dict) -> str:
    """One sentence: retention, the student's margin over the baseline, size and speed."""
    models = evaluation["models"]
    student, baseline = models.get("distill"), models.get("baseline")
    if not student or "vs_teacher" not in student:
        return ""
    vs = student["vs_teacher"]
    retention = "-" if vs.get("accuracy_retention") is None else f"{100 * vs['accuracy_retention']:.1f}"
    text = (f"The distilled student keeps {retention} % of the teacher's held-out "
            f"masked-token accuracy with {100 * (1 - vs['param_ratio']):.0f} % fewer parameters")
    if vs.get("speedup"):
        text += f", {vs['speedup']:.2f}x the teacher's inference speed"
    if baseline:
        margin = student["masked_lm_accuracy"] - baseline["masked_lm_accuracy"]
        text += (f"; it is {100 * abs(margin):.2f} accuracy points {'ahead of' if margin > 0 else 'behind'} the "
                 "same architecture trained from scratch for the same steps")
    return text + "."


def timing_rows(stage_times: dict) -> list[tuple[str, ...]]:
    rows = [("stage", "wall seconds", "CPU seconds", "this run")]
    wall = cpu = 0.0
    for name, t in stage_times.items():
        wall, cpu = wall + t["seconds"], cpu + t.get("cpu_seconds", 0.0)
        rows.append((name, f"{t['seconds']:.0f}", f"{t.get('cpu_seconds', 0.0):.0f}", "cached" if t["cached"] else "ran"))
    rows.append(("total", f"{wall:.0f}", f"{cpu:.0f}", ""))
    return rows


# ---- the report --------------------------------------------------------------------------------

def write_report(folder: str, settings, inputs: dict, stage_times: dict) -> dict:
    """report.md and loss_curves.png in ``folder``; returns the stage outputs (paths and the table)."""
    evaluation = inputs["evaluate"]["report"]
    for key in ("teacher", "distill", "baseline"):
        if key in evaluation["models"]:
            evaluation["models"][key]["layers"] = (settings.teacher_layers if key == "teacher"
                                                   else settings.student_num_layers)
    curves = {label: read_scalars(inputs[key]["paths"]["logs"]) for key, label in ROWS if key in inputs}
    png = plot_curves(curves, os.path.join(folder, "loss_curves.png"))
    rows = results_rows(evaluation)
    corpus = inputs["corpus"]
    lines = [
        "# keras-distil quickstart report", "",
        headline(evaluation), "",
        "## Held-out results", "",
        markdown_table(rows), "",
        f"Held-out text: {evaluation['data']['masked_tokens']:,} masked tokens in {evaluation['data']['sequences']:,} "
        f"sequences of at most {settings.max_len} tokens ({corpus['heldout']['documents']:,} held-out documents); "
        "the same positions for every model (fixed seed, uniform masking). Speed: median forward time of a "
        "batch on this machine; retention: student accuracy / teacher accuracy. The unigram reference "
        "predicts every masked token from the training corpus' token frequencies.", "",
        "## Set-up", "",
        f"- corpus: {corpus['train']['documents']:,} training documents ({corpus['train']['words']:,} words) from "
        + ", ".join(f"{k} {v['documents']:,}" for k, v in corpus["sources"].items()),
        f"- vocabulary: {inputs['vocab']['size']:,} WordPiece tokens "
        + ("learned from the corpus" if inputs["vocab"].get("learned") else f"given ({inputs['vocab']['paths']['vocab']})"),
        f"- teacher: {settings.teacher_layers} layers x {settings.hidden_size} hidden, {settings.num_heads} heads, "
        f"MLM for {settings.teacher_steps} steps, lr {settings.teacher_learning_rate:g}",
        f"- distilled student: {settings.student_num_layers} layers initialised from teacher layers "
        f"{settings.student_layers or list(range(0, settings.teacher_layers, 2))}, "
        f"{settings.alpha_ce:g} L_ce (T={settings.temperature:g}) + {settings.alpha_mlm:g} L_mlm + "
        f"{settings.alpha_cos:g} L_cos for {settings.student_steps} steps, lr {settings.student_learning_rate:g}",
        f"- baseline: the student's shape from random weights, MLM alone, {settings.student_steps} steps, "
        f"lr {settings.teacher_learning_rate:g}",
        f"- every run: batch {settings.batch_size}, sequences of {settings.max_len} tokens, dynamic masking",
        "", "## Loss curves", "", "![loss curves](loss_curves.png)", "",
        "## Stage timings", "", markdown_table(timing_rows(stage_times)), "",
    ]
    if "export" in inputs:
        lines += ["## Exports", ""] + [f"- {fmt}: `{path}` ({inputs['export']['bytes'][fmt] / 2**20:.1f} MiB)"
                                       for fmt, path in inputs["export"]["paths"].items()] + [""]
    md = os.path.join(folder, "report.md")
    atomic_write_bytes(md, "\n".join(lines).encode("utf-8"))
    return {"paths": {"report": md, "loss_curves": png}, "table": plain_table(rows), "headline": headline(evaluation)}
