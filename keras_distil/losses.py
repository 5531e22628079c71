"""The distillation losses, as pure TensorFlow functions.

Every loss is a weighted mean of a per-token quantity::

    loss = sum_i w_i * l_i / sum_i w_i        (0 when sum_i w_i == 0: no NaN on an empty mask)

The per-token functions are public so that a caller that shards a batch over replicas can divide the
local sum by the *global* weight (see ``Distiller``): the result is then independent of how the batch
was split. Everything is computed in float32, whatever the mixed-precision policy, and from
log-softmax, never log(softmax).
"""

from __future__ import annotations

import tensorflow as tf


def _f32(x):
    return tf.cast(x, tf.float32)


def weighted_mean(values, weights):
    """``sum(w * v) / sum(w)``, 0 when all weights are 0."""
    values, weights = _f32(values), _f32(weights)
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights), tf.reduce_sum(weights))


def soft_target_kl_per_token(student_logits, teacher_logits, temperature):
    """``T^2 * KL(softmax(t/T) || softmax(s/T))`` for each token: ``[..., V] -> [...]``.

    ``KL(p || q) = sum_v p_v (log p_v - log q_v)``. The T^2 factor keeps the gradient's scale
    independent of T (Hinton et al. 2015), as in DistilBERT.
    """
    t = float(temperature)
    log_p_teacher = tf.nn.log_softmax(_f32(teacher_logits) / t, axis=-1)
    log_p_student = tf.nn.log_softmax(_f32(student_logits) / t, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    return (t * t) * kl


def mlm_cross_entropy_per_token(labels, logits):
    """``-log softmax(s)[label]`` for each token: labels ``[...]``, logits ``[..., V]`` -> ``[...]``."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=_f32(logits))


def soft_targets_and_mlm_per_token(student_logits, teacher_logits, labels, temperature):
    """``(soft_target_kl_per_token, mlm_cross_entropy_per_token)`` of the same student logits in one pass, with
    the gradient in closed form: ``d kl / d s = T (softmax(s/T) - softmax(t/T))`` and ``d ce / d s = softmax(s) -
    onehot(label)``.

    The two vocabulary-sized terms are most of the step's work outside the matmuls (docs/runtime.md); autodiff
    through the separate terms makes about twice the passes over the ``[..., V]`` tensors. Equal to the
    separate functions to float32 rounding (tests/test_losses.py).

    Args:
      student_logits: ``[..., V]``, differentiable.
      teacher_logits: ``[..., V]``, constant.
      labels: ``[...]`` token ids.
      temperature: the soft targets' temperature T.

    Example:
    >>> s, t = tf.constant([[2.0, 0.5, -1.0]]), tf.constant([[1.0, 1.0, 0.0]])
    >>> kl, ce = soft_targets_and_mlm_per_token(s, t, tf.constant([0]), 2.0)
    >>> bool(abs(float(kl[0]) - float(soft_target_kl_per_token(s, t, 2.0)[0])) < 1e-6)
    True
    """
    t = float(temperature)
    log_p_teacher = tf.nn.log_softmax(_f32(teacher_logits) / t, axis=-1)
    p_teacher = tf.exp(log_p_teacher)
    labels = tf.cast(labels, tf.int32)

    @tf.custom_gradient
    def fused(logits):
        s = _f32(logits)
        log_q = tf.nn.log_softmax(s / t, axis=-1)
        log_q1 = tf.nn.log_softmax(s, axis=-1)
        kl = (t * t) * tf.reduce_sum(p_teacher * (log_p_teacher - log_q), axis=-1)
        ce = -tf.gather(log_q1, labels, batch_dims=len(labels.shape))

        def grad(d_kl, d_ce):
            onehot = tf.one_hot(labels, tf.shape(s)[-1], dtype=tf.float32)
            d = (d_kl[..., None] * t) * (tf.exp(log_q) - p_teacher) + d_ce[..., None] * (tf.exp(log_q1) - onehot)
            return tf.cast(d, logits.dtype)

        return (kl, ce), grad

    return fused(student_logits)


def cosine_distance_per_token(student_hidden, teacher_hidden, epsilon=1e-8):
    """``1 - cos(h_s, h_t)`` for each token: ``[..., H] -> [...]``.

    Norms are clamped at ``epsilon`` (as torch's ``CosineEmbeddingLoss``) so a zero vector gives 1, not NaN.
    """
    s, t = _f32(student_hidden), _f32(teacher_hidden)
    dot = tf.reduce_sum(s * t, axis=-1)
    norms = tf.maximum(tf.norm(s, axis=-1), epsilon) * tf.maximum(tf.norm(t, axis=-1), epsilon)
    return 1.0 - dot / norms


def mse_per_token(student_values, teacher_values):
    """Mean over the last axis of ``(s - t)^2``: ``[..., D] -> [...]``."""
    return tf.reduce_mean(tf.square(_f32(student_values) - _f32(teacher_values)), axis=-1)


def soft_target_cross_entropy(student_logits, teacher_logits, temperature, weights):
    """``T^2 * mean over selected tokens of KL(softmax(t/T) || softmax(s/T))``.

    Up to the teacher's entropy (constant in the student) this is the soft-target cross-entropy of
    the paper; the KL form is zero when the student matches the teacher. ``weights`` ``[...]``
    selects the tokens (the padding mask, or the masked-position weights).
    """
    return weighted_mean(soft_target_kl_per_token(student_logits, teacher_logits, temperature), weights)


def mlm_cross_entropy(labels, logits, weights):
    """Masked-LM loss: mean over masked positions (``weights`` > 0) of ``-log p_student(label)``."""
    return weighted_mean(mlm_cross_entropy_per_token(labels, logits), weights)


def cosine_loss(student_hidden, teacher_hidden, padding_mask):
    """Mean over non-pad tokens of ``1 - cos(h_s, h_t)`` between last hidden states ``[B, L, H]``."""
    return weighted_mean(cosine_distance_per_token(student_hidden, teacher_hidden), padding_mask)


def logits_mse(student_logits, teacher_logits, weights):
    """Mean over selected tokens and the vocabulary of ``(s - t)^2``."""
    return weighted_mean(mse_per_token(student_logits, teacher_logits), weights)


def hidden_mse(student_hidden, teacher_hidden, padding_mask):
    """Mean over non-pad tokens and hidden dims of ``(h_s - h_t)^2`` between last hidden states ``[B, L, H]``.

    Unlike the cosine it also matches the norms of the hidden states (what a sentence-embedding student
    is used for); it needs the teacher's width.
    """
    return weighted_mean(mse_per_token(student_hidden, teacher_hidden), padding_mask)


def sentence_embedding_mse(student_embeddings, teacher_embeddings, weights):
    """Mean over sequences (``weights`` [B] > 0) and embedding dims of ``(e_s - e_t)^2``, embeddings [B, D]
    (sentence-transformers' distillation loss on pooled embeddings)."""
    return weighted_mean(mse_per_token(student_embeddings, teacher_embeddings), weights)


def sentence_embedding_cosine(student_embeddings, teacher_embeddings, weights):
    """Mean over sequences (``weights`` [B] > 0) of ``1 - cos(e_s, e_t)`` between pooled embeddings [B, D]."""
    return weighted_mean(cosine_distance_per_token(student_embeddings, teacher_embeddings), weights)


# ---- relation terms (MiniLM, TinyBERT): distributions over the keys of each query token ----------------

MASKED_SCORE = -1e9  # the score of a padded key: exp() is 0, and differences of two masked log-probs are finite


def attention_scores(queries, keys):
    """Scaled dot products ``q . k / sqrt(d)`` per head: ``[B, L, h, d]`` twice -> ``[B, h, L, L]`` (float32)."""
    q, k = _f32(queries), _f32(keys)
    return tf.einsum("bqhd,bkhd->bhqk", q, k) / tf.sqrt(tf.cast(tf.shape(q)[-1], tf.float32))


def self_relation_scores(values, num_heads: int):
    """MiniLM's value relation before the softmax: ``V_r V_r^T / sqrt(d_r)`` for ``V`` [B, L, D] (or
    [B, L, heads, head_dim], flattened first) split into ``num_heads`` relation heads of ``D / num_heads``
    -> ``[B, num_heads, L, L]``."""
    v = _f32(values)
    shape = tf.shape(v)
    v = tf.reshape(v, (shape[0], shape[1], num_heads, -1))
    return attention_scores(v, v)


def masked_log_softmax(scores, padding_mask):
    """``log softmax`` over the last axis of ``scores`` [B, h, L, L] with padded keys (``padding_mask`` [B, L]
    == 0) given probability 0."""
    keys = tf.cast(padding_mask, tf.bool)[:, None, None, :]
    return tf.nn.log_softmax(tf.where(keys, _f32(scores), MASKED_SCORE), axis=-1)


def head_average_log_probs(log_probs):
    """``log mean_h p_h`` of distributions given as log-probabilities [B, h, L, L] -> [B, 1, L, L]: the
    head-averaged map, to compare models whose head counts differ."""
    heads = tf.cast(tf.shape(log_probs)[1], tf.float32)
    return tf.reduce_logsumexp(log_probs, axis=1, keepdims=True) - tf.math.log(heads)


def relation_kl_per_token(student_log_probs, teacher_log_probs):
    """``KL(teacher || student)`` over the keys, averaged over heads, for each query token:
    ``[B, h, L, L]`` log-probabilities -> ``[B, L]``."""
    t, s = _f32(teacher_log_probs), _f32(student_log_probs)
    kl = tf.reduce_sum(tf.exp(t) * (t - s), axis=-1)
    return tf.reduce_mean(kl, axis=1)
