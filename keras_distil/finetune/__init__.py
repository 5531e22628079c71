"""Text classification on a BertMLM encoder, and task-specific distillation (``keras-distil finetune``).

Data (:mod:`.data`): a local TSV/CSV file per split (a header row naming a text and a label column; ``.tsv`` is
tab-separated, ``.csv`` comma-separated, anything else sniffed from the header), or a TFDS dataset
read offline (``keras_distil.data.corpus``'s builder: a dataset that is not prepared locally fails at
once, saying how to provide it). Label names are mapped to ids in sorted order of the training
split's labels (numerically when every label is an integer); the command saves the mapping as
``labels.json``; a test label the training split never had is an error naming the file and column.

Model (:class:`TextClassifier`, :mod:`.classifier`): encoder hidden states -> mean over non-pad tokens (or
the [CLS] state) -> dropout -> dense to the classes, trained with ``model.fit`` and sparse cross-entropy
(:mod:`.train`).

Task distillation (:class:`TaskDistiller`, :mod:`.task_distiller`, the DistilBERT paper's second step): a
fine-tuned teacher classifier's logits distilled into a student classifier with

    loss = alpha_soft * T^2 * KL(softmax(t/T) || softmax(s/T)) + alpha_hard * CE(label, s)

(means over the batch; the functions of keras_distil.losses). The command: :mod:`keras_distil.cli.finetune`.
"""

from keras_distil.finetune.classifier import POOLINGS, TextClassifier
from keras_distil.finetune.data import (
    Split,
    TaskData,
    encode_dataset,
    label_mapping,
    load_text_classification,
    load_tfds_classification,
    read_labelled_file,
)
from keras_distil.finetune.task_distiller import TaskDistiller, task_distillation_loss
from keras_distil.finetune.train import accuracy, distill_classifier, finetune_classifier

__all__ = [
    "POOLINGS", "Split", "TaskData", "TaskDistiller", "TextClassifier", "accuracy", "distill_classifier",
    "encode_dataset", "finetune_classifier", "label_mapping", "load_text_classification",
    "load_tfds_classification", "read_labelled_file", "task_distillation_loss",
]
