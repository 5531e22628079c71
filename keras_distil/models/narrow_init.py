"""A narrower student initialised from the teacher: the teacher's weights reduced to the student's shape.

``distill.student_init = "teacher"`` with a student narrower than the teacher (the ``student`` section).
Copying layers (DistilBERT) needs equal widths; this reduction keeps as much of each teacher block's
function as a smaller block can hold. It is deterministic given the teacher and the sample:

1. **A basis for the residual stream.** The teacher's hidden states (the embedding layer's output and
   every block's, at the real tokens of a sample of the training text) give the ``H_s`` leading
   eigenvectors ``P`` [H_t, H_s] of their uncentred second moment: the directions that carry most of the
   activations' energy. Every tensor that reads or writes the residual stream is mapped through ``P``
   (``x_s = x_t P``, ``x_t ~ x_s P^T``): the embedding tables, the output projections, the pooler, the MLM
   head's transform. LayerNorm scales and shifts become ``diag(P^T diag(g) P)`` and ``P^T b``.
2. **Attention heads.** Each head is two bilinear maps of its input: ``q . k`` (queries against keys) and
   ``v W_o`` (what it writes). In the reduced basis, with the biases as an extra input row, each is
   replaced by its best rank-``d_s`` approximation (truncated SVD, Eckart-Young), split into the student's
   query/key (value/output) kernels, the scores rescaled for the student's ``sqrt(d_s)``. With fewer heads
   than the teacher, the student keeps the heads whose value-output map has the largest Frobenius norm.
3. **Feed-forward neurons.** The student keeps the ``I_s`` teacher neurons with the largest
   ``|P^T w_in| * |w_out P|`` (magnitude pruning in the reduced basis).
4. **Depth.** Student block ``j`` comes from teacher block ``layers[j]`` (``distill.student_layers``, else
   spread as for a copied student).

The ablation (docs/narrow-students.md) compares it with ``student_init = "random"``.
"""

from __future__ import annotations

import numpy as np

from keras_distil.config import ConfigError

# At most this many hidden-state rows (tokens x layers) enter the second moment; more are subsampled evenly.
MAX_ROWS = 50_000


def residual_basis(teacher, sample, width: int) -> np.ndarray:
    """``P`` [H_t, width]: the leading eigenvectors of the teacher's hidden states' uncentred second moment.

    Args:
      teacher: a :class:`~keras_distil.models.bert.BertMLM`.
      sample: batches (dicts with ``token_ids`` and ``padding_mask``) of the training text.
      width: the student's hidden size.
    """
    rows = []
    for batch in sample:
        inputs = {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}
        layers = teacher(inputs, training=False, return_logits=False, return_layers=True)["layers"]
        real = np.asarray(batch["padding_mask"]).astype(bool)
        rows += [np.asarray(x, np.float64)[real] for x in layers]
    states = np.concatenate(rows)
    if len(states) == 0:
        raise ConfigError("distill.student_init: the sample of the training text has no tokens to reduce the "
                          "teacher's width with")
    if len(states) > MAX_ROWS:
        states = states[np.linspace(0, len(states) - 1, MAX_ROWS).astype(int)]
    eigenvalues, vectors = np.linalg.eigh(states.T @ states / len(states))
    basis = vectors[:, np.argsort(eigenvalues)[::-1][:width]]
    signs = np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(width)])  # deterministic orientation
    return basis * np.where(signs == 0, 1.0, signs)


def _low_rank(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` with ``A @ B.T`` the best rank-``rank`` approximation of ``matrix``, balanced (``sqrt(S)``
    on both sides); zero columns where ``matrix`` has lower rank."""
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    a, b = np.zeros((matrix.shape[0], rank)), np.zeros((matrix.shape[1], rank))
    k = min(rank, len(s))
    root = np.sqrt(s[:k])
    a[:, :k], b[:, :k] = u[:, :k] * root, vt[:k].T * root
    return a, b


def _layer_norm(gamma, beta, p):
    return (p * p).T @ gamma, p.T @ beta


def _with_bias(kernel, bias):
    """``[kernel; bias]``: a kernel [H, d] with the bias as an extra input row, for inputs ``[x, 1]``."""
    return np.concatenate([kernel, bias[None]], axis=0)


def reduce_block(t: dict, p: np.ndarray, heads: int, head_dim: int, intermediate: int) -> dict:
    """One transformer block's weights (Keras layouts, names relative to the block) reduced through ``p``."""
    width = p.shape[1]
    q_k, q_b = t["self_attention_layer/query/kernel"], t["self_attention_layer/query/bias"]
    k_k, k_b = t["self_attention_layer/key/kernel"], t["self_attention_layer/key/bias"]
    v_k, v_b = t["self_attention_layer/value/kernel"], t["self_attention_layer/value/bias"]
    o_k = t["self_attention_layer/attention_output/kernel"]  # [h_t, d_t, H_t]
    t_heads, t_dim = q_k.shape[1], q_k.shape[2]
    if heads > t_heads:
        raise ConfigError(f"student.num_heads: {heads} is more than the teacher's {t_heads}; a reduced teacher "
                          "keeps a subset of its heads: use fewer heads, or distill.student_init 'random'")
    ov = [_with_bias(p.T @ v_k[:, h], v_b[h]) @ (o_k[h] @ p) for h in range(t_heads)]  # [H_s + 1, H_s]
    keep = sorted(np.argsort([-np.linalg.norm(m) for m in ov], kind="stable")[:heads])
    out = {name: np.zeros(shape) for name, shape in (
        ("self_attention_layer/query/kernel", (width, heads, head_dim)),
        ("self_attention_layer/key/kernel", (width, heads, head_dim)),
        ("self_attention_layer/value/kernel", (width, heads, head_dim)),
        ("self_attention_layer/query/bias", (heads, head_dim)),
        ("self_attention_layer/key/bias", (heads, head_dim)),
        ("self_attention_layer/value/bias", (heads, head_dim)),
        ("self_attention_layer/attention_output/kernel", (heads, head_dim, width)))}
    scale = np.sqrt(head_dim / t_dim)  # scores are divided by sqrt(d): keep the teacher's logits
    for s_head, h in enumerate(keep):
        qk = _with_bias(p.T @ q_k[:, h], q_b[h]) @ _with_bias(p.T @ k_k[:, h], k_b[h]).T * scale
        q, k = _low_rank(qk, head_dim)
        v, o = _low_rank(ov[h], head_dim)
        out["self_attention_layer/query/kernel"][:, s_head], out["self_attention_layer/query/bias"][s_head] = q[:-1], q[-1]
        out["self_attention_layer/key/kernel"][:, s_head], out["self_attention_layer/key/bias"][s_head] = k[:-1], k[-1]
        out["self_attention_layer/value/kernel"][:, s_head], out["self_attention_layer/value/bias"][s_head] = v[:-1], v[-1]
        out["self_attention_layer/attention_output/kernel"][s_head] = o.T
    out["self_attention_layer/attention_output/bias"] = p.T @ t["self_attention_layer/attention_output/bias"]
    w_in, b_in = t["feedforward_intermediate_dense/kernel"], t["feedforward_intermediate_dense/bias"]
    w_out = t["feedforward_output_dense/kernel"]
    if intermediate > w_in.shape[1]:
        raise ConfigError(f"student.intermediate_size: {intermediate} is more than the teacher's {w_in.shape[1]}; "
                          "a reduced teacher keeps a subset of its neurons: use distill.student_init 'random'")
    importance = np.linalg.norm(p.T @ w_in, axis=0) * np.linalg.norm(w_out @ p, axis=1)
    neurons = np.sort(np.argsort(-importance, kind="stable")[:intermediate])
    out["feedforward_intermediate_dense/kernel"] = p.T @ w_in[:, neurons]
    out["feedforward_intermediate_dense/bias"] = b_in[neurons]
    out["feedforward_output_dense/kernel"] = w_out[neurons] @ p
    out["feedforward_output_dense/bias"] = p.T @ t["feedforward_output_dense/bias"]
    for norm in ("self_attention_layer_norm", "feedforward_layer_norm"):
        out[f"{norm}/gamma"], out[f"{norm}/beta"] = _layer_norm(t[f"{norm}/gamma"], t[f"{norm}/beta"], p)
    return out


def reduced_weights(teacher_values: dict, p: np.ndarray, layers: list[int], heads: int, intermediate: int) -> dict:
    """Every student weight (Keras variable path -> array) from the teacher's through the basis ``p``."""
    width = p.shape[1]
    out = {}
    for name in ("token_embedding/embeddings", "position_embedding/embeddings", "segment_embedding/embeddings"):
        out[name] = teacher_values[name] @ p
    out["embeddings_layer_norm/gamma"], out["embeddings_layer_norm/beta"] = _layer_norm(
        teacher_values["embeddings_layer_norm/gamma"], teacher_values["embeddings_layer_norm/beta"], p)
    for j, i in enumerate(layers):
        prefix = f"transformer_layer_{i}/"
        block = {k[len(prefix):]: v for k, v in teacher_values.items() if k.startswith(prefix)}
        for name, value in reduce_block(block, p, heads, width // heads, intermediate).items():
            out[f"transformer_layer_{j}/{name}"] = value
    for dense in ("pooled_dense", "mlm_head/transform_dense"):
        if f"{dense}/kernel" in teacher_values:
            out[f"{dense}/kernel"] = p.T @ teacher_values[f"{dense}/kernel"] @ p
            out[f"{dense}/bias"] = p.T @ teacher_values[f"{dense}/bias"]
    if "mlm_head/transform_layer_norm/gamma" in teacher_values:
        out["mlm_head/transform_layer_norm/gamma"], out["mlm_head/transform_layer_norm/beta"] = _layer_norm(
            teacher_values["mlm_head/transform_layer_norm/gamma"], teacher_values["mlm_head/transform_layer_norm/beta"], p)
        out["mlm_head/output_bias"] = teacher_values["mlm_head/output_bias"]
    return out


def reduce_teacher(teacher, student, sample, layers: list[int] | None = None) -> np.ndarray:
    """Set ``student``'s weights to the teacher's reduced to its shape; returns the basis ``P``.

    Args:
      teacher: the teacher :class:`~keras_distil.models.bert.BertMLM`.
      student: a narrower :class:`~keras_distil.models.bert.BertMLM` (built, same vocabulary and head presence).
      sample: batches of the training text (dicts with ``token_ids`` and ``padding_mask``), e.g. 256 sequences.
      layers: the teacher block of each student block (None: as a copied student's).

    Example:
    >>> from keras_distil.config import StudentConfig
    >>> from keras_distil.models.bert import build_mlm_model, dummy_inputs
    >>> from keras_distil.models.student import build_student
    >>> teacher = build_mlm_model(dict(vocab_size=50, hidden_size=16, num_layers=4, num_heads=2,
    ...                                intermediate_size=32, max_position_embeddings=16))
    >>> student = build_student(teacher, init="teacher", shape=StudentConfig(hidden_size=8),
    ...                         sample=[dummy_inputs(4, 8, vocab_size=50)])
    >>> student.model_config.hidden_size
    8
    """
    from keras_distil.models.student import copied_layers

    t_cfg, s_cfg = teacher.model_config, student.model_config
    layers = copied_layers(t_cfg.num_layers, s_cfg.num_layers) if layers is None else list(layers)
    if len(layers) != s_cfg.num_layers:
        raise ConfigError(f"distill.student_layers: {layers} gives {len(layers)} layers for a "
                          f"{s_cfg.num_layers}-layer student")
    p = residual_basis(teacher, sample, s_cfg.hidden_size)
    values = reduced_weights({v.path: np.asarray(v, np.float64) for v in teacher.weights}, p, layers,
                             s_cfg.num_heads, s_cfg.intermediate_size)
    for variable in student.weights:
        if variable.path in values:
            variable.assign(values[variable.path].astype(variable.dtype).reshape(variable.shape))
    return p
