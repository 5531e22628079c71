"""Evaluation of masked-LM and sentence-embedding models: how good a model is on held-out text, and how
close to its teacher.

Masked-LM figures, for every model with an MLM head, on the same masked batches (deterministic masks):

* ``mlm_head``: whether the model has a masked-LM head (encoder-only / sentence-embedding checkpoints,
  e.g. a Hugging Face ``BertModel`` folder, have none);
* ``masked_lm_accuracy``: top-1 accuracy at the masked positions, weighted by ``mask_weights``;
* ``perplexity``: ``exp`` of the mean negative log-likelihood of the true tokens there (``nll``);
* ``params``: number of weights; ``latency_s``: median seconds per batch of a ``tf.function`` forward
  over ``latency_runs`` runs on the first batch, after a warm-up, the models taking turns within each run.
  The forward timed is the MLM one (logits at the masked positions) when every model has a head, else
  the encoder alone (last hidden states, on the clean text) for every model, so that ``speedup`` compares
  the same work.

With a teacher, every other model also gets ``vs_teacher``. At the masked positions (both need a head):

* ``top1_agreement``: fraction of masked positions where both predict the same token;
* ``kl``: mean ``KL(teacher || model)`` of the output distributions at the masked positions, T = 1.

On the clean text (the token ids before masking, :func:`clean_inputs`), always, whatever the heads: a
sentence encoder is used on clean text, and ~15 % [MASK]/random tokens would measure it on inputs it
never sees there. The sentence embedding of a text is the teacher's pooling (``teacher.pooling``, read from
its sentence-transformers files; mean over the real tokens when it has none) of the last hidden states:

* ``hidden_cosine``: mean over non-pad tokens of ``cos(h_teacher, h_model)`` (last hidden states);
* ``sentence_cosine``: mean over the texts of ``cos(e_model, e_teacher)``;
* ``similarity_spearman``: Spearman's rank correlation between the cosine similarities of all pairs of
  texts under the model and under the teacher (:func:`similarity_spearman`): does the model rank pairs
  of texts as similar or dissimilar as the teacher does, the question of semantic search and clustering;
* ``neighbour_agreement``: the share of texts whose nearest other text is the same under both
  (:func:`neighbour_agreement`).

A text is one held-out sequence: a document (line) longer than ``max_len`` tokens is split into several,
and ``min_len`` drops short ones (the CLI keeps sequences of 3 tokens and more when no model has an MLM
head). The two pairwise figures use the first ``max_texts`` texts (``data.texts``; an N x N similarity
matrix, in float32 numpy and in row chunks); ``hidden_cosine`` and ``sentence_cosine`` use them all. The
embedding figures need the teacher's width; they are null otherwise.

The rest of ``vs_teacher``: ``accuracy_retention`` (model accuracy / teacher's), ``perplexity_ratio``,
``speedup`` (teacher latency / model's) and ``param_ratio`` (model params / teacher's).

Encoder-only models: the masked-LM fields of a model without a head (``masked_lm_accuracy``, ``nll``,
``perplexity``) are null, and so are ``top1_agreement``, ``kl``, ``accuracy_retention`` and
``perplexity_ratio`` whenever the model or the teacher lacks a head. Figures that cannot be computed are
null, never 0; every null prints as ``-`` in the table.

The reference row (:func:`add_copied_reference`, on by default in the CLI): the untrained student made by
copying teacher layers (``build_student(teacher, layers)``, DistilBERT's initialisation), so that a
report shows what distillation added to where the student started.

The JSON report's shape: :mod:`.report`.

The modules: :mod:`.metrics` (per-batch sums, cosines and the pairwise embedding figures, pure
functions), :mod:`.forward` (a batch's inputs and clean text, compiled forwards, sentence embeddings),
:mod:`.timing` (median latencies), :mod:`.reference` (the copied-layer reference row), :mod:`.loop`
(held-out batches, loading checkpoints, :func:`evaluate_models` and :func:`evaluate_checkpoints`) and
:mod:`.report` (the JSON report and its table). ``keras-distil evaluate`` is :mod:`keras_distil.cli.evaluate`.
"""

from keras_distil.evaluation.forward import clean_inputs, sentence_embeddings, unmasked_token_ids
from keras_distil.evaluation.loop import (
    EVAL_SEED,
    MAX_TEXTS,
    evaluate_checkpoints,
    evaluate_models,
    heldout_batches,
)
from keras_distil.evaluation.metrics import (
    agreement_sums,
    average_ranks,
    cosine_sums,
    masked_lm_sums,
    nearest_neighbours,
    neighbour_agreement,
    pairwise_cosines,
    row_cosines,
    similarity_spearman,
    spearman_correlation,
)
from keras_distil.evaluation.reference import COPIED_NAME, add_copied_reference, copied_layers_for
from keras_distil.evaluation.report import REPORT_FORMAT, format_report
from keras_distil.evaluation.timing import median_latencies

__all__ = [
    "COPIED_NAME", "EVAL_SEED", "MAX_TEXTS", "REPORT_FORMAT", "add_copied_reference", "agreement_sums",
    "average_ranks", "clean_inputs", "copied_layers_for", "cosine_sums", "evaluate_checkpoints", "evaluate_models",
    "format_report", "heldout_batches", "masked_lm_sums", "median_latencies", "nearest_neighbours",
    "neighbour_agreement", "pairwise_cosines", "row_cosines", "sentence_embeddings", "similarity_spearman",
    "spearman_correlation", "unmasked_token_ids",
]
