"""Compare an export with the Keras model it came from, on a fixed batch, against fixed thresholds.

Thresholds (docs/serving.md):

* float32 (SavedModel, TFLite ``none``, checkpoints): max abs difference <= 1e-5;
* float16 weights (TFLite ``fp16``): max abs difference <= 1e-2;
* quantised (TFLite ``dynamic`` / ``int8``): top-1 agreement of the masked-token predictions >= 99 %
  (when logits are exported) and mean cosine of the token embeddings >= 0.99 (of the sentence
  embeddings, for the ``embed`` models, whose only float output they are).

Differences are taken relative to the output's scale, ``max|a - b| / max(1, max|ref|)``, so that a
BERT-base hidden state of magnitude ~10 is held to the same 1e-5 relative precision as a unit one;
the raw max abs difference is reported too. Only real (non-padding) tokens are compared; the logits,
being the head applied to the hidden states, at the masked positions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

TOLERANCES = {"none": 1e-5, "fp16": 1e-2}
MIN_TOP1 = 0.99
MIN_COSINE = 0.99


@dataclasses.dataclass
class FixedBatch:
    """Token ids with padding and a set of masked positions (``mask_rows``, ``mask_cols``)."""

    token_ids: np.ndarray
    padding_mask: np.ndarray
    mask_rows: np.ndarray
    mask_cols: np.ndarray

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        return {"token_ids": self.token_ids, "padding_mask": self.padding_mask}


def fixed_batch(vocab_size: int, seq_len: int, batch_size: int = 16, mask_id: int | None = None,
                cls_id: int | None = None, sep_id: int | None = None, sequences=None, seed: int = 1234) -> FixedBatch:
    """A deterministic batch: ``sequences`` (lists of ids from the corpus) when given, else random ids.

    Rows have different lengths (padding is exercised); 15 % of the real non-edge tokens of each row are
    chosen as prediction positions and replaced by ``mask_id`` when it is known.
    """
    rng = np.random.default_rng(seed)
    token_ids = np.zeros((batch_size, seq_len), np.int32)
    padding_mask = np.zeros((batch_size, seq_len), np.int32)
    low = min(5, vocab_size - 1)
    for b in range(batch_size):
        if sequences is not None and b < len(sequences):
            row = np.asarray(sequences[b][:seq_len], np.int32)
        else:
            n = int(rng.integers(max(3, seq_len // 2), seq_len + 1))
            row = rng.integers(low, vocab_size, n).astype(np.int32)
            if cls_id is not None and sep_id is not None:
                row[0], row[-1] = cls_id, sep_id
        token_ids[b, : len(row)] = row
        padding_mask[b, : len(row)] = 1
    rows, cols = [], []
    for b in range(batch_size):
        n = int(padding_mask[b].sum())
        inner = np.arange(1, max(n - 1, 1))
        k = max(1, round(0.15 * len(inner))) if len(inner) else 0
        chosen = np.sort(rng.choice(inner, k, replace=False)) if k else np.array([], int)
        rows += [b] * len(chosen)
        cols += list(chosen)
    rows, cols = np.asarray(rows, int), np.asarray(cols, int)
    if mask_id is not None:
        token_ids[rows, cols] = mask_id
    return FixedBatch(token_ids, padding_mask, rows, cols)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def compare(reference: dict, got: dict, padding_mask: np.ndarray, mask_rows=None, mask_cols=None) -> dict:
    """Figures of ``got`` against ``reference`` (dicts of pooled / embedding / hidden / logits arrays).

    ``pooled`` (BERT's pooler) and ``embedding`` (the sentence embedding) are [B, H], compared on every row;
    ``hidden`` at the real tokens, ``logits`` at the masked positions."""
    real = padding_mask.astype(bool)
    figures = {}
    worst_rel = 0.0
    for key in ("pooled", "embedding", "hidden", "logits"):
        if key not in reference or key not in got:
            continue
        ref, out = np.asarray(reference[key]), np.asarray(got[key])
        if ref.shape != out.shape:
            figures[f"{key}_shape_mismatch"] = f"{list(out.shape)} != {list(ref.shape)}"
            worst_rel = float("inf")
            continue
        if key == "logits" and mask_rows is not None and len(mask_rows):
            # The logits are the head applied to ``hidden`` (compared at every real token): the masked
            # positions suffice, and a [B, L, 30522] float64 copy would not (250 MB per array at B*L=2048).
            ref, out = ref[mask_rows, mask_cols], out[mask_rows, mask_cols]
        elif key not in ("pooled", "embedding"):
            ref, out = ref[real], out[real]
        ref, out = ref.astype(np.float64), out.astype(np.float64)
        diff = float(np.abs(ref - out).max()) if ref.size else 0.0
        rel = diff / max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
        if not np.isfinite(out).all():
            diff = rel = float("inf")
        figures[f"{key}_max_abs_diff"] = diff
        worst_rel = max(worst_rel, rel)
    figures["max_rel_diff"] = worst_rel
    if "hidden" in got and "hidden" in reference and "hidden_shape_mismatch" not in figures:
        cos = _cosine(np.asarray(reference["hidden"])[real], np.asarray(got["hidden"])[real])
        figures["hidden_cosine_mean"] = float(np.nan_to_num(cos).mean())
        figures["hidden_cosine_min"] = float(np.nan_to_num(cos).min())
    if "pooled" in got and "pooled" in reference and "pooled_shape_mismatch" not in figures:
        figures["pooled_cosine_min"] = float(np.nan_to_num(_cosine(reference["pooled"], got["pooled"])).min())
    if "embedding" in got and "embedding" in reference and "embedding_shape_mismatch" not in figures:
        cos = np.nan_to_num(_cosine(np.asarray(reference["embedding"]), np.asarray(got["embedding"])))
        figures["embedding_cosine_mean"] = float(cos.mean())
        figures["embedding_cosine_min"] = float(cos.min())
    if "logits" in got and "logits" in reference and "logits_shape_mismatch" not in figures and mask_rows is not None and len(mask_rows):
        ref_logits = np.asarray(reference["logits"])[mask_rows, mask_cols]
        ref_top, got_top = ref_logits.argmax(-1), np.asarray(got["logits"])[mask_rows, mask_cols].argmax(-1)
        figures["top1_agreement"] = float((ref_top == got_top).mean())
        figures["top1_positions"] = int(len(mask_rows))
        # How decided the Keras model was where the export disagrees (its top-1 minus top-2 logit): a
        # disagreement on a near-tie says little about the export, one on a clear winner says much.
        top2 = np.sort(ref_logits, axis=-1)[:, -2:]
        margins = (top2[:, 1] - top2[:, 0])[ref_top != got_top]
        figures["top1_miss_margins"] = [round(float(m), 4) for m in np.sort(margins)[:10]]
        figures["top1_median_margin"] = float(np.median(top2[:, 1] - top2[:, 0]))
    return figures


def failures(figures: dict, quantize: str = "none", min_top1: float = MIN_TOP1,
             min_cosine: float = MIN_COSINE) -> list[str]:
    """What fails the gate for ``quantize`` (empty list: passed).

    ``min_top1`` / ``min_cosine`` default to the thresholds above; lowering them is an explicit user
    decision (``--min-top1``), recorded in the export report.
    """
    problems = [f"{k}: {v}" for k, v in figures.items() if k.endswith("_shape_mismatch")]
    if quantize in TOLERANCES:
        tol = TOLERANCES[quantize]
        if not figures["max_rel_diff"] <= tol:
            problems.append(f"max difference {figures['max_rel_diff']:.3g} (relative to scale) > {tol:g}")
        return problems
    cosines = {"hidden_cosine_mean": "token", "embedding_cosine_mean": "sentence"}
    if not any(key in figures for key in cosines):
        problems.append("no embedding was compared (no token or sentence embedding among the outputs)")
    for key, what in cosines.items():
        if key in figures and not figures[key] >= min_cosine:
            problems.append(f"mean {what}-embedding cosine {figures[key]:.4f} < {min_cosine}")
    if "top1_agreement" in figures and not figures["top1_agreement"] >= min_top1:
        problems.append(f"masked-token top-1 agreement {figures['top1_agreement']:.2%} < {min_top1:.0%} "
                        f"(over {figures['top1_positions']} positions)")
    return problems
