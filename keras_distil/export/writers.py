"""One writer per format: write into a staging folder, reload what was written, compare with the model.

Each writer takes the student, the staging folder and an :class:`ExportPlan`, and returns
``{artifact: figures}`` (see :mod:`keras_distil.export.verify`); the caller gates the figures and renames
the folder into place.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np

from keras_distil.export import saved_model, text, tflite, verify
from keras_distil.export.errors import ExportError
from keras_distil.models.tokenizer_settings import TokenizerSettings


@dataclasses.dataclass
class ExportPlan:
    """Everything a writer needs besides the model and the folder."""

    tokenizer: TokenizerSettings | None  # written with checkpoints; None when the source has no vocabulary
    text: bool  # a raw-text signature / text-input TFLite model (needs ``tokenizer``)
    max_len: int  # longest tokenized text (the text signature truncates)
    with_logits: bool
    quantize: tuple[str, ...]
    batch: verify.FixedBatch
    reference: dict  # the Keras model's outputs on ``batch`` (all logits when it has a head)
    calibration: list[np.ndarray] | None = None  # corpus sequences for int8


def keras_outputs(model, token_ids, padding_mask) -> dict[str, np.ndarray]:
    out = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False,
                return_logits=model.mlm_head is not None)
    return {k: np.asarray(v) for k, v in out.items()}


def expected_text_inputs(plan: ExportPlan):
    """The ids the training tokenizer gives for the check sentences, packed as the text signature packs."""
    import tensorflow as tf

    tokenizer = text.training_tokenizer(plan.tokenizer)
    ids, mask = text.pack_for(plan.tokenizer, plan.max_len)(tokenizer.tokenize(tf.constant(text.CHECK_SENTENCES)))
    return ids.numpy(), mask.numpy()


def keras_embeddings(model, token_ids, padding_mask) -> np.ndarray:
    """The Keras model's sentence embeddings [B, H]: its last hidden states pooled as ``model.pooling`` says."""
    from keras_distil.models.pooling import pool_hidden_states

    hidden = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False,
                   return_logits=False)["hidden"]
    return np.asarray(pool_hidden_states(hidden, padding_mask, model.pooling))


def _text_figures(model, got: dict, plan: ExportPlan) -> dict:
    """Ids agreement with the training tokenizer, then outputs against the Keras model on those ids
    (the sentence embedding too when ``got`` has one: the ``embed`` signature)."""
    ids, mask = expected_text_inputs(plan)
    same_shape = got["token_ids"].shape == ids.shape
    rows_equal = (got["token_ids"] == ids).all(axis=1) & (got["padding_mask"] == mask).all(axis=1) \
        if same_shape else np.zeros(len(ids), bool)
    figures = {"text_rows_with_training_ids": f"{int(rows_equal.sum())}/{len(ids)}"}
    reference = keras_outputs(model, got["token_ids"], got["padding_mask"])  # outputs on the ids it produced
    if "embedding" in got:
        reference["embedding"] = keras_embeddings(model, got["token_ids"], got["padding_mask"])
    figures.update(verify.compare(reference, got, got["padding_mask"]))
    if not rows_equal.all():
        figures["text_ids_mismatch"] = [text.CHECK_SENTENCES[i] for i in np.flatnonzero(~rows_equal)]
    return figures


def write_saved_model(model, folder: str, plan: ExportPlan) -> dict:
    tokenizer = packer = None
    if plan.text:
        tokenizer = text.ServingTokenizer(plan.tokenizer)
        packer = text.pack_for(plan.tokenizer, plan.max_len)
    saved_model.write_archive(folder, model, plan.with_logits, tokenizer, packer)
    loaded = saved_model.load(folder)
    got = saved_model.run_signature(loaded, saved_model.IDS_SIGNATURE, **plan.batch.inputs)
    checks = {saved_model.IDS_SIGNATURE: verify.compare(plan.reference, got, plan.batch.padding_mask,
                                                        plan.batch.mask_rows, plan.batch.mask_cols)}
    if tokenizer is not None:
        sentences = np.array(text.CHECK_SENTENCES, dtype=object)
        got = saved_model.run_signature(loaded, saved_model.TEXT_SIGNATURE, text=sentences)
        checks[saved_model.TEXT_SIGNATURE] = _text_figures(model, got, plan)
        if model.pooling is not None:
            got = saved_model.run_signature(loaded, saved_model.EMBED_SIGNATURE, text=sentences)
            checks[saved_model.EMBED_SIGNATURE] = _text_figures(model, got, plan)
    return checks


def tflite_name(quantize: str, text_input: bool = False, embed: bool = False) -> str:
    """``model[_text|_embed][_fp16|_dynamic|_int8].tflite``."""
    kind = "_embed" if embed else "_text" if text_input else ""
    return f"model{kind}{'' if quantize == 'none' else '_' + quantize}.tflite"


def write_tflite(model, folder: str, plan: ExportPlan) -> dict:
    """The id-input model for each quantisation, and the text-input one (not for int8: see the docs); for a
    model with a sentence pooling, also the ``embed`` one (text in, sentence embedding out; not for int8)."""
    from keras_distil.export.calibration import representative_dataset

    work = os.path.join(folder, ".saved_model")
    ids_dir, text_dir = os.path.join(work, "ids"), os.path.join(work, "text")
    saved_model.write_archive(ids_dir, model, plan.with_logits)
    text_variants = [q for q in plan.quantize if q != "int8"] if plan.text else []
    embed_variants = text_variants if model.pooling is not None else []
    if text_variants:
        lite = text.LiteTokenizer(plan.tokenizer)
        saved_model.write_archive(text_dir, model, plan.with_logits, lite, text.pack_for(plan.tokenizer, plan.max_len))
    representative = representative_dataset(plan.calibration) if plan.calibration else None
    checks = {}
    for q in plan.quantize:
        path = os.path.join(folder, tflite_name(q))
        _write_bytes(path, tflite.convert(ids_dir, saved_model.IDS_SIGNATURE, q, representative))
        got = tflite.LiteModel(path)(**plan.batch.inputs)
        checks[os.path.basename(path)] = {"quantize": q, **verify.compare(
            plan.reference, got, plan.batch.padding_mask, plan.batch.mask_rows, plan.batch.mask_cols)}
    for q in text_variants:
        path = os.path.join(folder, tflite_name(q, text_input=True))
        _write_bytes(path, tflite.convert(text_dir, saved_model.TEXT_SIGNATURE, q, custom_ops=True))
        got = tflite.LiteModel(path, custom_ops=True)(text=np.array(text.CHECK_SENTENCES, dtype=object))
        checks[os.path.basename(path)] = {"quantize": q, **_text_figures(model, got, plan)}
    for q in embed_variants:  # text_dir's archive has the embed signature (the model has a pooling)
        path = os.path.join(folder, tflite_name(q, embed=True))
        _write_bytes(path, tflite.convert(text_dir, saved_model.EMBED_SIGNATURE, q, custom_ops=True))
        got = tflite.LiteModel(path, custom_ops=True)(text=np.array(text.CHECK_SENTENCES, dtype=object))
        checks[os.path.basename(path)] = {"quantize": q, **_text_figures(model, got, plan)}
    shutil.rmtree(work)
    return checks


def write_checkpoint(fmt: str):
    """A writer for ``hf`` / ``keras_hub`` / ``sentence_transformers``: the checkpoints module writes, we
    reload (:func:`~keras_distil.models.checkpoint_formats.load_teacher`) and compare on the fixed batch; for
    ``sentence_transformers`` the sentence embeddings too (the reloaded model pooled as its files say)."""

    def write(model, folder: str, plan: ExportPlan) -> dict:
        from keras_distil.models.checkpoint_formats import CheckpointError, load_teacher, save_student

        try:
            save_student(model, folder, fmt, tokenizer=plan.tokenizer, overwrite=True)
            reloaded = load_teacher(folder, require_mlm_head=False).model
        except CheckpointError as e:
            raise ExportError(str(e) if str(e).startswith(folder) else f"{folder}: {e}") from None
        got = keras_outputs(reloaded, plan.batch.token_ids, plan.batch.padding_mask)
        reference, note = plan.reference, {}
        if fmt == "hf" and model.mlm_head is not None:
            # transformers' BertForMaskedLM has no pooler: the (frozen, never trained) pooler is not written.
            got.pop("pooled")
            note = {"pooled": "not stored (BertForMaskedLM has no pooler)"}
        if fmt == "sentence_transformers":
            if model.mlm_head is not None:
                note = {"logits": "not stored (a sentence encoder is a head-less BertModel)"}
            reference = {**reference, "embedding": keras_embeddings(model, plan.batch.token_ids,
                                                                    plan.batch.padding_mask)}
            got["embedding"] = keras_embeddings(reloaded, plan.batch.token_ids, plan.batch.padding_mask)
        return {fmt: {**verify.compare(reference, got, plan.batch.padding_mask, plan.batch.mask_rows,
                                       plan.batch.mask_cols), **note}}

    return write


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


WRITERS = {
    "saved_model": write_saved_model,
    "tflite": write_tflite,
    "keras_hub": write_checkpoint("keras_hub"),
    "hf": write_checkpoint("hf"),
    "sentence_transformers": write_checkpoint("sentence_transformers"),
}
