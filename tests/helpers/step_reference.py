"""Independent references for the training-step tests: every distillation term in numpy from the models'
outputs, the whole effective batch's gradient from a ``tf.GradientTape`` over a loss written here, and
batches split over replicas.

Nothing here calls ``keras_distil.losses`` or ``Distiller.compute_terms``: the formulas are the module
docstring of keras_distil/distiller.py written out again, so that a wrong normalisation, a wrong weight
or a gradient of the wrong size in the package disagrees with them.

A *step* is ``k`` micro-batches (each a dict in the Distiller's contract, split row-wise over the replicas);
every term is a weighted mean over the whole step::

    term = sum over micro-batches of sum_i w_i * l_i  /  sum over micro-batches of sum_i w_i

with ``w`` the padding mask (tokens), the masked-slot weights, or 1 per non-empty row (sequences).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

# Every term on, with weights that give each a share of the loss of the same order (measured on the
# confident teacher's pattern batches: ce ~1, mlm 0.4, cos 0.17, logit mse ~0.5, hidden mse 0.35,
# sentence cos 0.16, sentence mse 0.01).
EVERY_TERM = {"alpha_ce": 2.0, "alpha_mlm": 1.5, "alpha_cos": 3.0, "alpha_mse": 0.5, "alpha_hidden_mse": 1.0,
              "alpha_sentence_mse": 30.0, "alpha_sentence_cos": 2.0}
# The terms that read no masked slot: what clean batches (data.masking="none") allow.
CLEAN_TERMS = {**EVERY_TERM, "alpha_mlm": 0.0}
TEMPERATURE = 2.0
TERM_NAMES = ("ce", "mlm", "cos", "mse", "hidden_mse", "sentence_mse", "sentence_cos")


@functools.cache
def two_cpu_replicas() -> tf.distribute.MirroredStrategy:
    """One MirroredStrategy over the two logical CPUs for the whole session. ReductionToOneDevice: the
    collective all-reduces of two MirroredStrategy objects in one process share instance keys, and a later
    strategy then fails with a shape mismatch (test_runtime_step.py)."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    assert strategy.num_replicas_in_sync == 2
    return strategy


def distribute(strategy, batch: dict):
    """``batch`` (numpy) as the step's input under ``strategy``: replica ``r`` of ``n`` gets rows
    ``[r * B/n, (r + 1) * B/n)``."""
    n = strategy.num_replicas_in_sync
    if n == 1:
        return {k: tf.constant(v) for k, v in batch.items()}
    rows = len(batch["token_ids"]) // n
    assert rows * n == len(batch["token_ids"])

    def part(ctx):
        r = ctx.replica_id_in_sync_group
        return {k: tf.constant(v[r * rows:(r + 1) * rows]) for k, v in batch.items()}

    return strategy.experimental_distribute_values_from_function(part)


# ---- numpy -----------------------------------------------------------------------------------------------


def outputs(model, batch: dict) -> dict:
    """``hidden`` [B, L, H] and (with a head) ``logits`` [B, L, V] at every position, float64."""
    inputs = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
    out = model(inputs, training=False)
    return {k: np.asarray(out[k], np.float64) for k in ("hidden", "logits") if k in out}


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _cos_distance(a, b):
    return 1.0 - (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def np_pool(hidden, padding, mode="mean", normalize=False):
    """sentence-transformers' Pooling (+ Normalize) in numpy; rows without tokens give zeros."""
    m = padding.astype(np.float64)[..., None]
    if mode == "cls":
        out = hidden[:, 0]
    elif mode == "max":
        out = np.where(m > 0, hidden, -np.inf).max(axis=1)
        out = np.where(np.isfinite(out), out, 0.0)
    else:
        out = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


def term_sums(batch: dict, student: dict, teacher: dict, alphas: dict, ce_positions: str, pooling) -> dict:
    """``{term: (sum_i w_i * l_i, sum_i w_i)}`` of one micro-batch for every term with ``alpha > 0``.

    ``student`` / ``teacher``: :func:`outputs`. ``pooling``: (mode, normalize) of the sentence terms."""
    pad = batch["padding_mask"].astype(np.float64)
    sums = {}
    if "mask_weights" in batch:
        positions = batch["mask_positions"].astype(int)[..., None]
        slots = batch["mask_weights"].astype(np.float64)

        def at_slots(x):
            return np.take_along_axis(x, positions, axis=1)

    if alphas.get("alpha_ce", 0) > 0 or alphas.get("alpha_mse", 0) > 0:
        if ce_positions == "all":
            s_logits, t_logits, w = student["logits"], teacher["logits"], pad
        else:
            s_logits, t_logits, w = at_slots(student["logits"]), at_slots(teacher["logits"]), slots
        if alphas.get("alpha_ce", 0) > 0:
            lp_t, lp_s = _log_softmax(t_logits / TEMPERATURE), _log_softmax(s_logits / TEMPERATURE)
            kl = TEMPERATURE ** 2 * (np.exp(lp_t) * (lp_t - lp_s)).sum(-1)
            sums["ce"] = ((kl * w).sum(), w.sum())
        if alphas.get("alpha_mse", 0) > 0:
            sums["mse"] = ((((s_logits - t_logits) ** 2).mean(-1) * w).sum(), w.sum())
    if alphas.get("alpha_mlm", 0) > 0:
        lp = _log_softmax(at_slots(student["logits"]))
        nll = -np.take_along_axis(lp, batch["mask_ids"].astype(int)[..., None], -1)[..., 0]
        sums["mlm"] = ((nll * slots).sum(), slots.sum())
    hs, ht = student["hidden"], teacher["hidden"]
    if alphas.get("alpha_cos", 0) > 0:
        sums["cos"] = ((_cos_distance(hs, ht) * pad).sum(), pad.sum())
    if alphas.get("alpha_hidden_mse", 0) > 0:
        sums["hidden_mse"] = ((((hs - ht) ** 2).mean(-1) * pad).sum(), pad.sum())
    if alphas.get("alpha_sentence_mse", 0) > 0 or alphas.get("alpha_sentence_cos", 0) > 0:
        es, et = np_pool(hs, pad, *pooling), np_pool(ht, pad, *pooling)
        rows = (pad.max(1) > 0).astype(np.float64)
        if alphas.get("alpha_sentence_mse", 0) > 0:
            sums["sentence_mse"] = ((((es - et) ** 2).mean(-1) * rows).sum(), rows.sum())
        if alphas.get("alpha_sentence_cos", 0) > 0:
            with np.errstate(invalid="ignore"):
                dist = np.where(rows > 0, _cos_distance(es, et), 0.0)
            sums["sentence_cos"] = ((dist * rows).sum(), rows.sum())
    return sums


def reference_logs(teacher, student, batches: list, alphas: dict, ce_positions: str = "all",
                   pooling=("mean", False)) -> dict:
    """The step's logs computed in numpy from the models as they are now: each term, ``loss``, and the count
    totals ``tokens``, ``masked``, ``sequences`` of the whole step."""
    numerators, denominators = {}, {}
    for batch in batches:
        for name, (num, den) in term_sums(batch, outputs(student, batch), outputs(teacher, batch), alphas,
                                          ce_positions, pooling).items():
            numerators[name] = numerators.get(name, 0.0) + num
            denominators[name] = denominators.get(name, 0.0) + den
    logs = {name: numerators[name] / denominators[name] for name in numerators}
    logs["loss"] = sum(alphas[f"alpha_{name}"] * value for name, value in logs.items())
    logs.update(count_totals(batches))
    return logs


def count_totals(batches: list) -> dict:
    return {
        "tokens": float(sum(b["padding_mask"].sum() for b in batches)),
        "masked": float(sum(b["mask_weights"].sum() for b in batches if "mask_weights" in b)),
        "sequences": float(sum((b["padding_mask"].max(1) > 0).sum() for b in batches)),
    }


# ---- the gradient, from a tape -------------------------------------------------------------------------


def _tf_pool(hidden, pad, mode, normalize):
    m = pad[..., None]
    if mode == "cls":
        out = hidden[:, 0]
    elif mode == "max":
        out = tf.reduce_max(tf.where(m > 0, hidden, -1e30), axis=1)
    else:
        out = tf.reduce_sum(hidden * m, 1) / tf.reduce_sum(m, 1)
    return tf.math.l2_normalize(out, -1) if normalize else out


def _tf_cos_distance(a, b):
    return 1.0 - tf.reduce_sum(a * b, -1) / (tf.norm(a, axis=-1) * tf.norm(b, axis=-1))


def tape_gradient(teacher, student, batches: list, alphas: dict, ce_positions: str = "all",
                  pooling=("mean", False)) -> list:
    """The gradient of the whole step's loss (all micro-batches together, on one device) with respect to
    ``student.trainable_variables``, as dense numpy arrays; the loss written here with plain TF ops over
    the logits at every position."""
    totals = count_totals(batches)
    variables = student.trainable_variables
    T = TEMPERATURE
    with tf.GradientTape() as tape:
        loss = tf.constant(0.0, tf.float64)
        for batch in batches:
            inputs = {"token_ids": tf.constant(batch["token_ids"]), "padding_mask": tf.constant(batch["padding_mask"])}
            t = teacher(inputs, training=False)
            s = student(inputs, training=True)
            pad = tf.constant(batch["padding_mask"], tf.float32)
            if "mask_weights" in batch:
                positions = tf.constant(batch["mask_positions"], tf.int32)
                slots = tf.constant(batch["mask_weights"], tf.float32)
            terms = {}
            if alphas.get("alpha_ce", 0) > 0 or alphas.get("alpha_mse", 0) > 0:
                s_logits, t_logits = s["logits"], tf.stop_gradient(t["logits"])
                if ce_positions == "all":
                    w, key = pad, "tokens"
                else:
                    s_logits = tf.gather(s_logits, positions, batch_dims=1)
                    t_logits = tf.gather(t_logits, positions, batch_dims=1)
                    w, key = slots, "masked"
                if alphas.get("alpha_ce", 0) > 0:
                    lp_t = tf.nn.log_softmax(t_logits / T)
                    kl = T * T * tf.reduce_sum(tf.exp(lp_t) * (lp_t - tf.nn.log_softmax(s_logits / T)), -1)
                    terms["ce"] = tf.reduce_sum(kl * w) / totals[key]
                if alphas.get("alpha_mse", 0) > 0:
                    terms["mse"] = tf.reduce_sum(tf.reduce_mean((s_logits - t_logits) ** 2, -1) * w) / totals[key]
            if alphas.get("alpha_mlm", 0) > 0:
                logits = tf.gather(s["logits"], positions, batch_dims=1)
                nll = -tf.reduce_sum(tf.one_hot(batch["mask_ids"], logits.shape[-1]) * tf.nn.log_softmax(logits), -1)
                terms["mlm"] = tf.reduce_sum(nll * slots) / totals["masked"]
            hs, ht = s["hidden"], tf.stop_gradient(t["hidden"])
            if alphas.get("alpha_cos", 0) > 0:
                terms["cos"] = tf.reduce_sum(_tf_cos_distance(hs, ht) * pad) / totals["tokens"]
            if alphas.get("alpha_hidden_mse", 0) > 0:
                terms["hidden_mse"] = tf.reduce_sum(tf.reduce_mean((hs - ht) ** 2, -1) * pad) / totals["tokens"]
            if alphas.get("alpha_sentence_mse", 0) > 0 or alphas.get("alpha_sentence_cos", 0) > 0:
                rows = batch["padding_mask"].max(1) > 0  # rows without a real token are no sequence
                es = _tf_pool(tf.boolean_mask(hs, rows), tf.boolean_mask(pad, rows), *pooling)
                et = _tf_pool(tf.boolean_mask(ht, rows), tf.boolean_mask(pad, rows), *pooling)
                if alphas.get("alpha_sentence_mse", 0) > 0:
                    terms["sentence_mse"] = tf.reduce_sum(tf.reduce_mean((es - et) ** 2, -1)) / totals["sequences"]
                if alphas.get("alpha_sentence_cos", 0) > 0:
                    terms["sentence_cos"] = tf.reduce_sum(_tf_cos_distance(es, et)) / totals["sequences"]
            for name, value in terms.items():
                loss += alphas[f"alpha_{name}"] * tf.cast(value, tf.float64)
    grads = tape.gradient(loss, variables)
    return [np.zeros(v.shape, "float32") if g is None else tf.convert_to_tensor(g).numpy()
            for g, v in zip(grads, variables)]


def global_norm(arrays) -> float:
    return float(np.sqrt(sum(float((np.asarray(a, np.float64) ** 2).sum()) for a in arrays)))


def relative_error(got, want) -> float:
    """``||got - want|| / ||want||`` over a list of arrays (one global norm)."""
    return global_norm([np.asarray(g, np.float64) - w for g, w in zip(got, want, strict=True)]) / global_norm(want)
