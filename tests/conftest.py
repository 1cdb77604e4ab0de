"""Shared fixtures: a tiny deterministic ONNX model and synthetic test signals.

The fixture model follows the detector contract (models/README.md) but its
"spoof" logit is just the window's RMS level, so tests can steer verdicts
with loudness and check the plumbing exactly; detection quality is tested
with the shipped model and measured in bench/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SPEECH = SHARED / "data" / "speech"


def write_level_model(directory: Path, *, gain: float = 40.0, offset: float = -4.0,
                      samples: int = 64600) -> Path:
    """ONNX model: logits = [gain*rms + offset, 0]; loud -> spoof, quiet -> bona fide."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", samples])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    nodes = [
        helper.make_node("Mul", ["waveform", "waveform"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1),
        helper.make_node("Sqrt", ["ms"], ["rms"]),
        helper.make_node("Mul", ["rms", "gain"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["spoof"]),
        helper.make_node("Mul", ["rms", "zero"], ["bona"]),
        helper.make_node("Concat", ["spoof", "bona"], ["logits"], axis=1),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
        helper.make_tensor("offset", TensorProto.FLOAT, [], [offset]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    graph = helper.make_graph(nodes, "level", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path = directory / "level.onnx"
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(json.dumps({
        "name": "level", "version": "test-level-1", "architecture": "rms",
        "sample_rate": 16000, "input_samples": samples, "input_name": "waveform",
        "output_name": "logits", "bonafide_index": 1,
        "calibration": {"method": "platt", "a": 1.0, "b": 0.0}, "calibration_n": 400,
    }))
    return path


@pytest.fixture(scope="session")
def level_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_level_model(tmp_path_factory.mktemp("models"))


def voiced(seconds: float, amplitude: float, rate: int = 16000, f0: float = 140.0) -> np.ndarray:
    """A speech-like harmonic signal with syllable-rate amplitude modulation.

    WebRTC's VAD accepts it as speech, which lets tests control VAD gating.
    """
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    signal = amplitude * tone * envelope / 2.0
    return np.clip(signal * 32768, -32768, 32767).astype(np.int16)
