"""The tensors of a checkpoint folder: safetensors reading (:class:`TensorStore`) and writing, the
checkpoint error type, atomic checkpoint folders.

Safetensors headers are parsed here rather than by the ``safetensors`` package because the reader must
(a) never unpickle and never need torch, (b) read bfloat16 tensors into float32 without torch, and
(c) name the file and the tensor in every error: a truncated download, a corrupt header, a tensor whose
byte range does not fit its shape. Writing uses ``safetensors.numpy.save_file`` (the reference writer).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct

import numpy as np

from keras_distil.errors import KerasDistilError
from keras_distil.files import read_json, staged_folder


class CheckpointError(KerasDistilError, ValueError):
    """A checkpoint cannot be read or written; the message names the file and, where there is one, the tensor.

    A :class:`~keras_distil.errors.KerasDistilError` (and a ``ValueError``).

    Args:
      *args: the message (as for any exception).

    Example:
    >>> import keras_distil as kd
    >>> try:
    ...     kd.load_teacher("no/such/teacher")
    ... except kd.CheckpointError as e:
    ...     print(e)
    no/such/teacher: no such file or folder
    """


# safetensors dtype tag -> (numpy dtype of the stored bytes, bytes per element)
_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 * 1024 * 1024

PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt.index", "training_args.bin")
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"


class SafetensorsFile:
    """One ``.safetensors`` file: its header is read and checked on open, tensors on demand."""

    def __init__(self, path: str):
        self.path = path
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
                (n,) = struct.unpack("<Q", head)
                if n > min(size - 8, _MAX_HEADER):
                    raise CheckpointError(
                        f"{path}: corrupt or truncated safetensors file: the header claims {n} bytes "
                        f"but the file has {size} bytes")
                raw = f.read(n)
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
        try:
            header = json.loads(raw.decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
        self.metadata = header.pop("__metadata__", None) or {}
        self._data_start = 8 + n
        self._data_size = size - self._data_start
        self._entries: dict[str, tuple[np.dtype, tuple[int, ...], int, int, str]] = {}
        for name, entry in header.items():
            self._entries[name] = self._check_entry(name, entry)

    def _check_entry(self, name, entry):
        try:
            tag, shape, (begin, end) = entry["dtype"], tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{self.path}: tensor '{name}': malformed header entry {entry!r}") from None
        if tag not in _DTYPES:
            raise CheckpointError(f"{self.path}: tensor '{name}': unsupported dtype {tag}")
        expected = int(np.prod(shape, dtype=np.int64)) * _DTYPES[tag].itemsize
        if not (0 <= begin <= end) or end - begin != expected:
            raise CheckpointError(
                f"{self.path}: tensor '{name}': byte range [{begin}, {end}) does not hold {tag}{list(shape)}")
        if end > self._data_size:
            raise CheckpointError(
                f"{self.path}: truncated: tensor '{name}' ends at byte {self._data_start + end} but the file "
                f"has {self._data_start + self._data_size} bytes (an interrupted download?)")
        return _DTYPES[tag], shape, begin, end, tag

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def get(self, name: str) -> np.ndarray:
        """The tensor as a numpy array; floating point tensors come back as float32."""
        dtype, shape, begin, end, tag = self._entries[name]
        with open(self.path, "rb") as f:
            f.seek(self._data_start + begin)
            raw = f.read(end - begin)
        if len(raw) != end - begin:  # the file shrank after the header was checked
            raise CheckpointError(f"{self.path}: truncated while reading tensor '{name}'")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        if tag == "BF16":  # bfloat16 is the top half of a float32
            return (array.astype(np.uint32) << 16).view(np.float32)
        if array.dtype.kind == "f":
            return array.astype(np.float32)
        return array.copy()


class TensorStore:
    """The tensors of a Hugging Face folder: one ``model.safetensors`` or the shards named by its index."""

    def __init__(self, folder: str):
        self.folder = folder
        index_path = os.path.join(folder, SAFETENSORS_INDEX)
        single = os.path.join(folder, SAFETENSORS_FILE)
        self._where: dict[str, SafetensorsFile] = {}
        if os.path.isfile(single):
            file = SafetensorsFile(single)
            self._where = dict.fromkeys(file.keys(), file)
        elif os.path.isfile(index_path):
            self._read_index(index_path)
        else:
            raise CheckpointError(missing_weights_message(folder))

    def _read_index(self, index_path: str) -> None:
        weight_map = read_json(index_path, "a safetensors index", expect=dict, error=CheckpointError).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index_path}: not a safetensors index (needs a 'weight_map' object)")
        shards: dict[str, SafetensorsFile] = {}
        for name, shard in sorted(weight_map.items()):
            if not isinstance(shard, str) or os.path.basename(shard) != shard or not shard.endswith(".safetensors"):
                raise CheckpointError(f"{index_path}: tensor '{name}': bad shard name {shard!r}")
            if shard not in shards:
                path = os.path.join(self.folder, shard)
                if not os.path.isfile(path):
                    raise CheckpointError(f"{index_path}: tensor '{name}' is in shard {shard}, which is missing")
                shards[shard] = SafetensorsFile(path)
            if name not in shards[shard].keys():
                raise CheckpointError(f"{shards[shard].path}: tensor '{name}' listed in {SAFETENSORS_INDEX} is absent")
            self._where[name] = shards[shard]

    def keys(self) -> list[str]:
        return list(self._where)

    def file_of(self, name: str) -> str:
        return self._where[name].path

    def shape(self, name: str) -> tuple[int, ...]:
        return self._where[name].shape(name)

    def get(self, name: str) -> np.ndarray:
        return self._where[name].get(name)

    @property
    def description(self) -> str:
        files = sorted({os.path.basename(f.path) for f in self._where.values()})
        return os.path.join(self.folder, files[0] if len(files) == 1 else SAFETENSORS_INDEX)


def missing_weights_message(folder: str) -> str:
    """Why a folder has no readable weights; pickle checkpoints get an explanation and the way out."""
    present = [f for f in PICKLE_FILES if os.path.exists(os.path.join(folder, f))]
    if present:
        return (
            f"{os.path.join(folder, present[0])}: refusing to read a pickle checkpoint. Unpickling a file runs "
            "arbitrary code, so keras-distil reads safetensors only. Convert it once, on a machine and with a "
            "file you trust: `python -c \"import transformers as t; m = t.AutoModelForMaskedLM.from_pretrained("
            f"'{folder}'); m.save_pretrained('{folder}')\"` (writes {SAFETENSORS_FILE}; use t.AutoModel for an "
            "encoder-only checkpoint), or use the Hugging Face 'convert to safetensors' tool.")
    if os.path.exists(os.path.join(folder, "tf_model.h5")):
        return (f"{os.path.join(folder, 'tf_model.h5')}: Keras 2 / transformers-TF weights are not supported; "
                f"convert the checkpoint to {SAFETENSORS_FILE} with transformers first.")
    return f"{folder}: no {SAFETENSORS_FILE} and no {SAFETENSORS_INDEX} (the weights file is missing)"


def write_safetensors(tensors: dict[str, np.ndarray], path: str, metadata: dict[str, str] | None = None) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, path,
              metadata=metadata or {"format": "pt"})


def atomic_folder(folder: str, overwrite: bool = False) -> contextlib.AbstractContextManager[str]:
    """Yield a temporary sibling folder; on success it replaces ``folder``, on failure it is removed.

    A reader never sees a half-written checkpoint: the folder either keeps its old contents or has all
    the new ones. ``overwrite=False`` refuses to replace an existing non-empty folder. (See
    :func:`keras_distil.files.staged_folder`; its refusals are raised here as :class:`CheckpointError`.)
    """
    return staged_folder(folder, overwrite, error=CheckpointError)
