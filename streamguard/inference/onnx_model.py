"""One ONNX Runtime session per model file, shared by every stream.

A model is an ``.onnx`` file plus a sidecar ``.json`` (see models/README.md)
that says how to feed it and how to read its output, so shipped and imported
models are interchangeable without code changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from streamguard.errors import ModelError


@dataclass(frozen=True, slots=True)
class Calibration:
    """Platt scaling of the spoof margin: ``P = sigmoid(a * margin + b)``."""

    method: str = "none"
    a: float = 1.0
    b: float = 0.0
    n: int = 0


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    version: str
    architecture: str
    sample_rate: int
    input_samples: int
    input_name: str
    output_name: str
    bonafide_index: int
    calibration: Calibration
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sidecar(cls, path: Path) -> ModelInfo:
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ModelError(f"model metadata {path} is missing") from exc
        except (OSError, ValueError) as exc:
            raise ModelError(f"model metadata {path} is unreadable: {exc}") from exc
        try:
            cal = meta.get("calibration") or {}
            return cls(
                name=str(meta["name"]),
                version=str(meta["version"]),
                architecture=str(meta.get("architecture", "unknown")),
                sample_rate=int(meta.get("sample_rate", 16000)),
                input_samples=int(meta["input_samples"]),
                input_name=str(meta.get("input_name", "waveform")),
                output_name=str(meta.get("output_name", "logits")),
                bonafide_index=int(meta.get("bonafide_index", 1)),
                calibration=Calibration(
                    method=str(cal.get("method", "none")),
                    a=float(cal.get("a", 1.0)),
                    b=float(cal.get("b", 0.0)),
                    n=int(meta.get("calibration_n", 0)),
                ),
                extra=meta,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model metadata {path} lacks or mistypes {exc}") from exc


def cpu_session(model: str | bytes, *, threads: int, error: str) -> ort.InferenceSession:
    """One ONNX Runtime CPU session the way every StreamGuard model runs: sequential,
    ``threads`` intra-op threads, one inter-op thread (streams are parallel, not ops).
    A model that will not load raises ModelError("<error>: <why>")."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(model, sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped exception classes
        raise ModelError(f"{error}: {exc}") from exc


class OnnxModel:
    """A loaded model; ``run`` is thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, path: Path, intra_op_threads: int = 1) -> None:
        self.path = path
        self.info = ModelInfo.from_sidecar(path.with_suffix(".json"))
        self._session = cpu_session(str(path), threads=intra_op_threads,
                                    error=f"cannot load ONNX model {path}")
        inputs = {i.name for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        if self.info.input_name not in inputs or self.info.output_name not in outputs:
            raise ModelError(
                f"{path}: expected input {self.info.input_name!r} and output "
                f"{self.info.output_name!r}, model has {sorted(inputs)} -> {sorted(outputs)}"
            )

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        outputs = self._session.run([self.info.output_name], {self.info.input_name: batch})
        return np.asarray(outputs[0], dtype=np.float32)
