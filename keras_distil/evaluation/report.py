"""The evaluation report: its JSON shape and its plain-text table.

The JSON report (what :func:`~keras_distil.evaluation.loop.evaluate_models` returns, completed by
:func:`~keras_distil.evaluation.loop.evaluate_checkpoints`; ``keras-distil evaluate --out`` writes it)::

    {"format": "keras-distil-evaluation", "teacher": NAME | null,
     "data": {"batches", "sequences", "masked_tokens", "texts", "pooling", "latency_forward",
              and from the command line: "sources", "seed", "max_len", "min_len", "batch_size",
              "vocab_file", "copied_reference"},
     "models": {NAME: {"params", "mlm_head", "masked_lm_accuracy", "nll", "perplexity", "latency_s",
                       "vs_teacher": {...}  (every model but the teacher, when there is one),
                       "copied_layers": [...]  (the reference row only)}}}

``sequences`` counts the non-empty sequences of the ``batches`` (the texts the cosines average over) and
``masked_tokens`` their masked slots (what the masked-LM figures average over); ``texts`` is the number of
texts of the pairwise figures (null without a teacher); ``pooling`` is the pooling of the sentence
embeddings (``mode``, ``normalize``, ``max_seq_length``, and ``source``: "teacher" or "default"; null
without a teacher); ``latency_forward`` says which forward was timed (``"masked_lm"``, ``"encoder"`` or
null); ``copied_reference`` is ``{"name", "layers", "source", "like"}`` of the reference row, or null.
"""

from __future__ import annotations

REPORT_FORMAT = "keras-distil-evaluation"


def format_report(report: dict) -> str:
    """A plain-text table of the report; a null figure (no head, no teacher, no timing) prints as ``-``.

    Below it, what the embedding figures used (pooling, texts) and the reference row's layers."""
    rows = [("model", "params", "MLM acc", "ppl", "ms/batch", "agree", "KL", "tok cos", "sent cos", "sim rho",
             "NN agree", "retention", "speedup")]

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    for name, m in report["models"].items():
        v = m.get("vs_teacher", {})
        rows.append((name, f"{m['params']:,}", fmt(m["masked_lm_accuracy"], ".4f"), fmt(m["perplexity"], ".2f"),
                     fmt(None if m["latency_s"] is None else 1000 * m["latency_s"], ".1f"),
                     fmt(v.get("top1_agreement"), ".4f"), fmt(v.get("kl"), ".4f"), fmt(v.get("hidden_cosine"), ".4f"),
                     fmt(v.get("sentence_cosine"), ".4f"), fmt(v.get("similarity_spearman"), ".4f"),
                     fmt(v.get("neighbour_agreement"), ".4f"), fmt(v.get("accuracy_retention"), ".3f"),
                     fmt(v.get("speedup"), ".2f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    data = report.get("data", {})
    pooling = data.get("pooling")
    if pooling:
        source = "the teacher's" if pooling.get("source") == "teacher" else "default: the teacher has none"
        lines.append(f"sentence embeddings on the clean text: {pooling['mode']} pooling"
                     f"{', normalized' if pooling.get('normalize') else ''} ({source}); sim rho (Spearman of the "
                     f"pairwise cosines) and NN agree (same nearest text) over {data.get('texts')} texts")
    reference = data.get("copied_reference")
    if reference:
        lines.append(f"{reference['name']}: teacher layers {','.join(map(str, reference['layers']))} copied, "
                     f"not trained ({reference['source']})")
    return "\n".join(lines)
