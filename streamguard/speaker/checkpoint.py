"""Read PyTorch checkpoints into numpy arrays without torch and without running code.

Why: the GE2E weights ship as ``resemblyzer/pretrained.pt`` but the runtime
must not need torch, and ``pickle.load`` on a downloaded file can execute
arbitrary code. A pickle is a small stack program whose only dangerous
instruction is "import this global and call it"; :class:`_TensorUnpickler`
answers that with a fixed allow-list (tensor rebuild, storage types,
``OrderedDict``) and refuses everything else.

Two on-disk layouts exist and both are read:

* legacy (torch < 1.6, the resemblyzer file): consecutive pickles — magic
  number, protocol version, system info, the object, the list of storage
  keys — then each storage as an int64 element count plus raw little-endian
  bytes;
* zip (torch >= 1.6): ``<root>/data.pkl`` plus one ``<root>/data/<key>`` member
  of raw bytes per storage.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from streamguard.errors import ModelError

__all__ = ["CheckpointError", "read_checkpoint", "read_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# Storage classes torch pickles by name -> numpy little-endian dtype.
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
# A checkpoint's largest plausible storage; a corrupt count must not allocate terabytes.
_MAX_STORAGE_BYTES = 4 << 30

Array = npt.NDArray[Any]


class CheckpointError(ModelError):
    """A checkpoint is unreadable, truncated, or holds objects other than tensors."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass(slots=True)
class _StorageRef:
    """A storage named in the pickle whose bytes are attached after unpickling."""

    key: str
    dtype: np.dtype[Any]
    numel: int
    data: Array | None = None


@dataclass(frozen=True, slots=True)
class _PendingTensor:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _StorageRef, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *_ignored: object) -> _PendingTensor:
    """Stands in for ``torch._utils._rebuild_tensor_v2``; storages are filled in later."""
    if not isinstance(storage, _StorageRef):
        raise CheckpointError("tensor refers to something that is not a storage")
    return _PendingTensor(storage, int(offset), tuple(int(s) for s in size),
                          tuple(int(s) for s in stride))


def _rebuild_parameter(data: _PendingTensor, *_ignored: object) -> _PendingTensor:
    return data


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _TensorUnpickler(pickle.Unpickler):
    def __init__(self, fh: IO[bytes], storages: dict[str, _StorageRef]) -> None:
        super().__init__(fh)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"checkpoint holds a Python object of type {module}.{name}; only tensors "
                "and dicts are accepted, because loading other objects could run code"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        # legacy: ('storage', type, key, location, numel, view_metadata)
        # zip:    ('storage', type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id in checkpoint: {pid!r:.80}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("checkpoint uses storage views, which are not supported")
        if not isinstance(kind, _StorageType):
            raise CheckpointError(f"unsupported storage type {kind!r:.80}")
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = _StorageRef(key, kind.dtype, numel)
        return ref


def _materialise(obj: Any) -> Any:
    """Replace every pending tensor by a read-only numpy array over its storage."""
    if isinstance(obj, _PendingTensor):
        data = obj.storage.data
        if data is None:
            raise CheckpointError(f"storage {obj.storage.key} is missing from the checkpoint")
        itemsize = data.dtype.itemsize
        extent = obj.offset + sum((n - 1) * s for n, s in zip(obj.shape, obj.stride, strict=True)
                                  if n > 0) + 1
        if obj.offset < 0 or any(s < 0 for s in obj.stride) or (
                extent > len(data) and 0 not in obj.shape):
            raise CheckpointError(f"tensor over storage {obj.storage.key} is out of bounds")
        view = np.lib.stride_tricks.as_strided(
            data[obj.offset:], shape=obj.shape,
            strides=tuple(s * itemsize for s in obj.stride), writeable=False)
        return np.array(view)
    if isinstance(obj, Mapping):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    return obj


def _read_exact(fh: IO[bytes], n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise CheckpointError(f"checkpoint is truncated while reading {what}")
    return data


def _load_legacy(fh: IO[bytes]) -> Any:
    safe = _TensorUnpickler(fh, {})
    # The three header pickles are plain ints/dicts; the restricted unpickler reads them safely.
    if safe.load() != _LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (bad magic number)")
    if safe.load() != _LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy PyTorch checkpoint protocol")
    info = safe.load()
    if not isinstance(info, Mapping) or not info.get("little_endian", True):
        raise CheckpointError("big-endian checkpoints are not supported")
    storages: dict[str, _StorageRef] = {}
    obj = _TensorUnpickler(fh, storages).load()
    keys = _TensorUnpickler(fh, {}).load()
    if not isinstance(keys, list):
        raise CheckpointError("checkpoint storage index is malformed")
    for key in keys:
        ref = storages.get(str(key))
        if ref is None:
            raise CheckpointError(f"checkpoint lists an unknown storage {key!r:.40}")
        (numel,) = struct.unpack("<q", _read_exact(fh, 8, f"storage {key} header"))
        if numel != ref.numel or not 0 <= numel * ref.dtype.itemsize <= _MAX_STORAGE_BYTES:
            raise CheckpointError(f"storage {key} has an inconsistent size")
        raw = _read_exact(fh, numel * ref.dtype.itemsize, f"storage {key}")
        ref.data = np.frombuffer(raw, dtype=ref.dtype)
    return _materialise(obj)


def _load_zip(archive: zipfile.ZipFile) -> Any:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise CheckpointError("zip checkpoint has no single data.pkl")
    root = pickles[0][: -len("data.pkl")]
    storages: dict[str, _StorageRef] = {}
    with archive.open(pickles[0]) as fh:
        obj = _TensorUnpickler(io.BytesIO(fh.read()), storages).load()
    for key, ref in storages.items():
        try:
            info = archive.getinfo(f"{root}data/{key}")
        except KeyError:
            raise CheckpointError(f"zip checkpoint lacks storage {key}") from None
        expected = ref.numel * ref.dtype.itemsize
        if info.file_size != expected or expected > _MAX_STORAGE_BYTES:
            raise CheckpointError(f"storage {key} has {info.file_size} bytes, "
                                  f"expected {expected}")
        ref.data = np.frombuffer(archive.read(info), dtype=ref.dtype)
    return _materialise(obj)


def read_checkpoint(path: str | Path) -> Any:
    """The object saved with ``torch.save``, tensors returned as numpy arrays."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(0)
            if head.startswith(b"PK\x03\x04"):
                with zipfile.ZipFile(fh) as archive:
                    return _load_zip(archive)
            if head.startswith(b"\x80"):
                return _load_legacy(fh)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError,
            TypeError, IndexError, KeyError, AttributeError, struct.error) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                              f"({type(exc).__name__}: {exc})") from None
    what = "an empty file" if not head else "neither a zip archive nor a pickle"
    raise CheckpointError(f"{path} is not a PyTorch checkpoint ({what})")


def read_state_dict(path: str | Path, key: str | None = None) -> dict[str, Array]:
    """A flat ``name -> array`` mapping, optionally taken from ``checkpoint[key]``."""
    obj = read_checkpoint(path)
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    state = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not state:
        raise CheckpointError(f"{path}: state dict holds no tensors")
    return state
