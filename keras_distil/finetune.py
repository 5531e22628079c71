"""``keras-distil finetune``: text classification on a BertMLM encoder, and task-specific distillation.

Data: a local TSV/CSV file per split (a header row naming a text and a label column; ``.tsv`` is
tab-separated, ``.csv`` comma-separated, anything else sniffed from the header), or a TFDS dataset
read offline (``keras_distil.data.corpus``'s builder: a dataset that is not prepared locally fails at
once, saying how to provide it). Label names are mapped to ids in sorted order of the training
split's labels (numerically when every label is an integer); the mapping is saved as
``labels.json``; a test label the training split never had is an error naming the file and column.

Model (:class:`TextClassifier`): encoder hidden states -> mean over non-pad tokens (or the [CLS]
state) -> dropout -> dense to the classes, trained with ``model.fit`` and sparse cross-entropy.

Task distillation (:class:`TaskDistiller`, the DistilBERT paper's second step): a fine-tuned teacher
classifier's logits distilled into a student classifier with

    loss = alpha_soft * T^2 * KL(softmax(t/T) || softmax(s/T)) + alpha_hard * CE(label, s)

(means over the batch; the functions of keras_distil.losses).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from keras_distil import losses
from keras_distil.config import ConfigError
from keras_distil.data.base import DataError, atomic_write_json
from keras_distil.evaluate import mean_pool

logger = logging.getLogger("keras_distil.finetune")

POOLINGS = ("mean", "cls")
LABELS_FILE, REPORT_FILE = "labels.json", "finetune_report.json"


# ---- data --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Split:
    """Texts and label ids of one split; ``source`` names where they came from (for messages)."""

    texts: list[str]
    labels: np.ndarray
    source: str


@dataclasses.dataclass
class TaskData:
    label_names: list[str]
    train: Split
    test: Split
    validation: Split | None = None


def _delimiter(path: str, header: str) -> str:
    if path.endswith((".tsv", ".tsv.txt")):
        return "\t"
    if path.endswith(".csv"):
        return ","
    return "\t" if "\t" in header else ","


def read_labelled_file(path: str | os.PathLike, text_column: str = "text",
                       label_column: str = "label") -> tuple[list[str], list[str]]:
    """``(texts, label names)`` of a TSV/CSV file with a header row; errors name the file, the column and
    the line."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: bytes that are not UTF-8") from None
    lines = content.splitlines()
    if not content.strip():
        raise DataError(f"{path}: empty file (expected a header row with columns {text_column!r} and "
                        f"{label_column!r}, then one example per row)")
    reader = csv.DictReader(lines, delimiter=_delimiter(path, lines[0]))
    columns = reader.fieldnames or []
    for column in (text_column, label_column):
        if column not in columns:
            raise DataError(f"{path}: no column {column!r} in the header; columns: {', '.join(columns)}")
    texts, labels = [], []
    for row in reader:
        text, label = row.get(text_column), row.get(label_column)
        if text is None or label is None or label.strip() == "":
            raise DataError(f"{path}: line {reader.line_num}: missing value in column "
                            f"{label_column if text is not None else text_column!r}")
        texts.append(text)
        labels.append(label.strip())
    if not texts:
        raise DataError(f"{path}: no example after the header row")
    return texts, labels


def label_mapping(names: list[str]) -> list[str]:
    """Distinct label names, sorted numerically when they are all integers, else as strings."""
    distinct = set(names)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def to_ids(labels: list[str], label_names: list[str], source: str, column: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(label_names)}
    for row, label in enumerate(labels):
        if label not in index:
            raise DataError(f"{source}: row {row + 1}: label {label!r} in column {column!r} is not among the "
                            f"training labels ({', '.join(label_names)})")
    return np.asarray([index[label] for label in labels], np.int32)


def load_text_classification(train: str, test: str, validation: str | None = None, text_column: str = "text",
                             label_column: str = "label") -> TaskData:
    """The splits of local TSV/CSV files, labels mapped by the training split's names."""
    train_texts, train_labels = read_labelled_file(train, text_column, label_column)
    names = label_mapping(train_labels)
    if len(names) < 2:
        raise DataError(f"{train}: column {label_column!r} holds a single label ({names[0]!r}); a classifier "
                        "needs at least two")

    def split(path):
        texts, labels = (train_texts, train_labels) if path == train else read_labelled_file(path, text_column,
                                                                                               label_column)
        return Split(texts, to_ids(labels, names, os.fspath(path), label_column), os.fspath(path))

    return TaskData(names, split(train), split(test), split(validation) if validation else None)


def load_tfds_classification(name: str, data_dir: str | None = None, train_split: str = "train",
                             test_split: str = "test", validation_split: str | None = None,
                             text_key: str = "text", label_key: str = "label") -> TaskData:
    """A TFDS text classification dataset read offline (never downloaded)."""
    from keras_distil.data.corpus import TfdsSource, _tfds_builder

    builder = _tfds_builder(TfdsSource(name, train_split, text_key, data_dir))
    features = builder.info.features
    for key in (text_key, label_key):
        if key not in features:
            raise DataError(f"tfds:{name}: no feature {key!r}; available: {', '.join(features)}")
    label_feature = features[label_key]
    label_names = list(getattr(label_feature, "names", None) or [])
    splits = list(builder.info.splits.keys())

    def split(split_name):
        if split_name.split("[")[0] not in splits:
            raise DataError(f"tfds:{name}: no split {split_name!r}; available: {', '.join(splits)}")
        texts, labels = [], []
        for example in builder.as_dataset(split=split_name, shuffle_files=False).as_numpy_iterator():
            texts.append(example[text_key].decode("utf-8", errors="replace"))
            labels.append(int(example[label_key]))
        return Split(texts, np.asarray(labels, np.int32), f"tfds:{name}:{split_name}")

    data = TaskData(label_names, split(train_split), split(test_split),
                    split(validation_split) if validation_split else None)
    if not data.label_names:
        data.label_names = [str(i) for i in range(int(data.train.labels.max()) + 1)]
    for part in (data.train, data.test, data.validation):
        if part is not None and part.labels.size and part.labels.max() >= len(data.label_names):
            raise DataError(f"{part.source}: label {int(part.labels.max())} in {label_key!r} is beyond the "
                            f"{len(data.label_names)} classes")
    return data


def encode_dataset(split: Split, tokenizer, max_len: int, batch_size: int,
                   shuffle_seed: int | None = None) -> tf.data.Dataset:
    """``(inputs dict, label)`` batches: ``[CLS] text [SEP]`` truncated and padded to ``max_len``."""
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(split.texts, tf.string), split.labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(split.texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(lambda text, label: (tokenizer.encode(text, max_len), label),
                                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


# ---- models ------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="keras_distil")
class TextClassifier(keras.Model):
    """A BertMLM encoder -> pooled hidden state (``mean`` over non-pad tokens, or ``cls``) -> dropout ->
    dense: logits [B, num_classes]."""

    def __init__(self, encoder, num_classes: int, pooling: str = "mean", dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling: got {pooling!r}; accepted: {', '.join(POOLINGS)}")
        self.encoder = encoder
        if getattr(encoder, "mlm_head", None) is not None:
            encoder.mlm_head.trainable = False  # unused here: no gradient reaches it
        self.num_classes = int(num_classes)
        self.pooling = pooling
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate)
        self.head = keras.layers.Dense(self.num_classes, kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=0.02), name="classifier")
        self.head.build((None, encoder.model_config.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        inputs = {k: v for k, v in inputs.items() if k in ("token_ids", "padding_mask", "segment_ids")}
        hidden = self.encoder(inputs, training=training, return_logits=False)["hidden"]
        pooled = mean_pool(hidden, inputs["padding_mask"]) if self.pooling == "mean" else hidden[:, 0]
        return self.head(self.dropout(tf.cast(pooled, self.compute_dtype), training=training))

    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder),
                "num_classes": self.num_classes, "pooling": self.pooling, "dropout": self.dropout_rate}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        return cls(encoder, **config)


def task_distillation_loss(student_logits, teacher_logits, labels, temperature: float = 2.0,
                           alpha_soft: float = 0.5, alpha_hard: float = 0.5) -> tuple[tf.Tensor, dict]:
    """``alpha_soft * T^2 KL(teacher_T || student_T) + alpha_hard * CE(labels, student)``, batch means;
    returns the total and the two terms."""
    weights = tf.ones(tf.shape(labels)[:1], tf.float32)
    soft = losses.soft_target_cross_entropy(student_logits, teacher_logits, temperature, weights)
    hard = losses.mlm_cross_entropy(labels, student_logits, weights)
    return alpha_soft * soft + alpha_hard * hard, {"soft": soft, "hard": hard}


class TaskDistiller(keras.Model):
    """Train ``student`` (a TextClassifier) on ``(inputs, label)`` batches against a frozen ``teacher``."""

    def __init__(self, teacher, student, temperature: float = 2.0, alpha_soft: float = 0.5,
                 alpha_hard: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ConfigError(f"temperature: got {temperature!r}; accepted: a number > 0")
        if alpha_soft < 0 or alpha_hard < 0 or alpha_soft + alpha_hard == 0:
            raise ConfigError(f"alpha_soft/alpha_hard: got {alpha_soft!r}/{alpha_hard!r}; accepted: numbers >= 0, "
                              "not both 0")
        if teacher.num_classes != student.num_classes:
            raise ConfigError(f"the teacher has {teacher.num_classes} classes, the student {student.num_classes}")
        sizes = [getattr(getattr(m.encoder, "model_config", None), "vocab_size", None) for m in (teacher, student)]
        if None not in sizes and sizes[0] != sizes[1]:
            raise ConfigError(f"model.vocab_size: the teacher has {sizes[0]} tokens, the student {sizes[1]}; they "
                              "must share the vocabulary (both read the same token ids)")
        self.teacher, self.student = teacher, student
        self.teacher.trainable = False
        self.temperature, self.alpha_soft, self.alpha_hard = float(temperature), float(alpha_soft), float(alpha_hard)
        self._trackers = {n: keras.metrics.Mean(name=n) for n in ("loss", "soft", "hard")}
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True

    @property
    def metrics(self):
        return [*self._trackers.values(), self._accuracy]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def train_step(self, data):
        inputs, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        teacher_logits = tf.stop_gradient(self.teacher(inputs, training=False))
        variables = self.student.trainable_variables
        replicas = tf.distribute.get_strategy().num_replicas_in_sync  # a custom loss is not scaled by Keras
        with tf.GradientTape() as tape:
            logits = self.student(inputs, training=True)
            total, terms = task_distillation_loss(logits, teacher_logits, labels, self.temperature,
                                                  self.alpha_soft, self.alpha_hard)
            scaled = self.optimizer.scale_loss(total / replicas)
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        for name, value in {"loss": total, **terms}.items():
            self._trackers[name].update_state(value)
        self._accuracy.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}


# ---- training ----------------------------------------------------------------------------------

def _optimizer(learning_rate: float, steps: int, warmup_prop: float = 0.1):
    """AdamW with a linear warm-up to ``learning_rate`` over 10 % of ``steps``, then cosine decay to 0
    (Keras' own schedule, so a saved classifier's optimizer serialises)."""
    warmup = max(int(warmup_prop * steps), 1)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(steps - warmup, 1), alpha=0.0,
                                                      warmup_target=learning_rate, warmup_steps=warmup)
    return keras.optimizers.AdamW(schedule, weight_decay=0.01)


def finetune_classifier(classifier: TextClassifier, train: tf.data.Dataset, epochs: int = 3,
                        learning_rate: float = 5e-5, validation: tf.data.Dataset | None = None, verbose="auto"):
    """Fit ``classifier`` on ``(inputs, label)`` batches with sparse cross-entropy; returns the History."""
    steps = epochs * int(train.cardinality())
    classifier.compile(optimizer=_optimizer(learning_rate, steps),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return classifier.fit(train, epochs=epochs, validation_data=validation, verbose=verbose)


def distill_classifier(teacher: TextClassifier, student: TextClassifier, train: tf.data.Dataset, epochs: int = 3,
                       learning_rate: float = 5e-5, temperature: float = 2.0, alpha_soft: float = 0.5,
                       alpha_hard: float = 0.5, verbose="auto"):
    """Task-specific distillation of ``teacher``'s logits into ``student``; returns the History."""
    distiller = TaskDistiller(teacher, student, temperature, alpha_soft, alpha_hard)
    distiller.compile(optimizer=_optimizer(learning_rate, epochs * int(train.cardinality())))
    return distiller.fit(train, epochs=epochs, verbose=verbose)


def accuracy(classifier, dataset: tf.data.Dataset) -> float:
    """Top-1 accuracy of ``classifier`` on ``(inputs, label)`` batches."""
    correct = total = 0
    predict = tf.function(lambda inputs: classifier(inputs, training=False), reduce_retracing=True)
    for inputs, labels in dataset:
        predictions = tf.argmax(predict(inputs), axis=-1, output_type=tf.int32)
        correct += int(tf.reduce_sum(tf.cast(tf.equal(predictions, tf.cast(labels, tf.int32)), tf.int32)))
        total += int(tf.size(labels))
    return correct / total if total else float("nan")


# ---- command line ------------------------------------------------------------------------------

def add_finetune_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``finetune --model PATH (--train F --test F | --tfds NAME) [--teacher PATH] --out DIR``."""
    parser = subparsers.add_parser(
        "finetune", help="text classification on a TSV/CSV or TFDS dataset; task-specific distillation",
        description="Fine-tune a classifier on the encoder of --model and report test accuracy. With --teacher, "
                    "the teacher (a pretrained checkpoint, fine-tuned here first, or a fine-tuned classifier "
                    ".keras) is distilled into the --model classifier on the task.")
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="encoder checkpoint (HF folder, KerasHub preset or .keras); the student with --teacher")
    parser.add_argument("--teacher", metavar="PATH", help="teacher checkpoint, or a fine-tuned classifier .keras")
    data = parser.add_argument_group("data (files or TFDS)")
    data.add_argument("--train", metavar="FILE", help="training TSV/CSV with a header row")
    data.add_argument("--test", metavar="FILE", help="test TSV/CSV")
    data.add_argument("--validation", metavar="FILE", help="optional validation TSV/CSV")
    data.add_argument("--text-column", default="text")
    data.add_argument("--label-column", default="label")
    data.add_argument("--tfds", metavar="NAME", help="a TFDS dataset prepared locally (never downloaded)")
    data.add_argument("--tfds-data-dir", metavar="DIR")
    data.add_argument("--train-split", default="train")
    data.add_argument("--test-split", default="test")
    parser.add_argument("--vocab", metavar="VOCAB.txt", help="WordPiece vocabulary (default: the checkpoint's)")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--pooling", choices=POOLINGS, default="mean")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--temperature", type=float, default=2.0, help="soft-target temperature (with --teacher)")
    parser.add_argument("--alpha-soft", type=float, default=0.5, help="weight of T^2 KL (with --teacher)")
    parser.add_argument("--alpha-hard", type=float, default=0.5, help="weight of the label CE (with --teacher)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="classifier.keras, labels.json and finetune_report.json go here")
    parser.set_defaults(func=run_finetune)
    return parser


def _load_task(args) -> TaskData:
    if args.tfds:
        return load_tfds_classification(args.tfds, args.tfds_data_dir, args.train_split, args.test_split)
    if not (args.train and args.test):
        raise ConfigError("finetune: give --train FILE and --test FILE, or --tfds NAME")
    return load_text_classification(args.train, args.test, args.validation, args.text_column, args.label_column)


def _tokenizer(args, loaded):
    from keras_distil.data.tokenize import WordPieceTokenizer

    if args.vocab:
        return WordPieceTokenizer.from_vocab_file(args.vocab)
    settings = loaded.tokenizer
    if settings is None:
        raise ConfigError(f"{loaded.source}: carries no vocabulary; pass --vocab")
    return WordPieceTokenizer(list(settings.vocab), settings.lowercase, settings.strip_accents,
                              vocab_file=settings.vocab_file)


def _save(model, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, path)


def _teacher_classifier(args, train_ds, num_classes):
    """A fine-tuned teacher: loaded when --teacher is a classifier .keras, else fine-tuned here."""
    from keras_distil.models.checkpoints import load_teacher

    if args.teacher.endswith(".keras"):
        obj = keras.saving.load_model(args.teacher, compile=False, safe_mode=True)
        if isinstance(obj, TextClassifier):
            if obj.num_classes != num_classes:
                raise ConfigError(f"{args.teacher}: a classifier of {obj.num_classes} classes; the task has "
                                  f"{num_classes}")
            return obj
    encoder = load_teacher(args.teacher, require_mlm_head=False).model
    teacher = TextClassifier(encoder, num_classes, args.pooling, args.dropout)
    finetune_classifier(teacher, train_ds, args.epochs, args.learning_rate)
    _save(teacher, os.path.join(args.out, "teacher_classifier.keras"))
    return teacher


def run_finetune(args: argparse.Namespace) -> int:
    from keras_distil.models.checkpoints import load_teacher

    keras.utils.set_random_seed(args.seed)
    task = _load_task(args)
    loaded = load_teacher(args.model, require_mlm_head=False)
    tokenizer = _tokenizer(args, loaded)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_json(os.path.join(args.out, LABELS_FILE), {"label_names": task.label_names})

    def dataset(split, shuffle=False):
        return encode_dataset(split, tokenizer, args.max_len, args.batch_size, args.seed if shuffle else None)

    train_ds, test_ds = dataset(task.train, shuffle=True), dataset(task.test)
    num_classes = len(task.label_names)
    report = {"labels": task.label_names, "train_examples": len(task.train.texts),
              "test_examples": len(task.test.texts), "test_source": task.test.source}
    classifier = TextClassifier(loaded.model, num_classes, args.pooling, args.dropout)
    if args.teacher:
        teacher = _teacher_classifier(args, train_ds, num_classes)
        report["teacher_test_accuracy"] = accuracy(teacher, test_ds)
        distill_classifier(teacher, classifier, train_ds, args.epochs, args.learning_rate, args.temperature,
                           args.alpha_soft, args.alpha_hard)
        report["distillation"] = {"temperature": args.temperature, "alpha_soft": args.alpha_soft,
                                  "alpha_hard": args.alpha_hard}
    else:
        validation = dataset(task.validation) if task.validation else None
        finetune_classifier(classifier, train_ds, args.epochs, args.learning_rate, validation)
    report["test_accuracy"] = accuracy(classifier, test_ds)
    if "teacher_test_accuracy" in report and report["teacher_test_accuracy"]:
        report["retention"] = report["test_accuracy"] / report["teacher_test_accuracy"]
    _save(classifier, os.path.join(args.out, "classifier.keras"))
    atomic_write_json(os.path.join(args.out, REPORT_FILE), report)
    line = f"test accuracy {report['test_accuracy']:.4f} on {report['test_examples']} examples"
    if "teacher_test_accuracy" in report:
        line += f" (teacher {report['teacher_test_accuracy']:.4f})"
    print(f"{line}; classifier: {os.path.join(args.out, 'classifier.keras')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m keras_distil.finetune ...`` until the CLI registers the command."""
    parser = argparse.ArgumentParser(prog="keras-distil")
    add_finetune_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
