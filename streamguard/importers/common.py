"""What every checkpoint importer shares: naming, hashing, and writing the files safely.

An import writes ``<name>.onnx`` through a temporary file that is verified
before it replaces anything, then its sidecar JSON the same way; a failure
leaves no half-written model behind. Torch-free, like this package's
``__init__``: the importers themselves bring torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamguard.errors import ModelError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ModelImportError(ModelError):
    """A checkpoint could not be imported (unreadable, wrong model, export or
    verification failure). The message says which and why."""


def valid_name(name: str) -> bool:
    return _NAME_RE.match(name) is not None


def check_name(name: str | None) -> None:
    """Refuse a model name that could escape the model directory or confuse tools."""
    if name is not None and not valid_name(name):
        raise ModelImportError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64 characters, no path separators)")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class WrittenModel:
    onnx_path: Path
    json_path: Path
    export_seconds: float
    max_abs_diff: float


def write_onnx(model_dir: Path, name: str, export: Callable[[Path], None],
               verify: Callable[[Path], float]) -> WrittenModel:
    """Export to a temporary file, verify it (returns the max |Δ| vs the source
    framework), then move it to ``model_dir/<name>.onnx``."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelImportError(f"cannot create model directory {model_dir}: {exc}") from exc
    onnx_path = model_dir / f"{name}.onnx"
    tmp_path = model_dir / f".{name}.onnx.partial"
    started = time.perf_counter()
    try:
        export(tmp_path)
        export_s = time.perf_counter() - started
        diff = verify(tmp_path)
        os.replace(tmp_path, onnx_path)
    except OSError as exc:
        raise ModelImportError(f"cannot write {onnx_path}: {exc}") from exc
    finally:
        tmp_path.unlink(missing_ok=True)
    return WrittenModel(onnx_path, model_dir / f"{name}.json", export_s, diff)


def write_sidecar(written: WrittenModel, sidecar: dict[str, Any]) -> Path:
    """Write the sidecar JSON atomically; on failure remove the ONNX it describes."""
    tmp = written.json_path.with_name(written.json_path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
        os.replace(tmp, written.json_path)
    except OSError as exc:
        written.onnx_path.unlink(missing_ok=True)
        raise ModelImportError(f"cannot write {written.json_path}: {exc}") from exc
    return written.onnx_path
