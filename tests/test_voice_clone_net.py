"""The voice-clone network: the shipped architecture, and the optional time branch."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from .conftest import REPO

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
sys.path.insert(0, str(REPO / "models"))

import train_voice_clone as tvc  # noqa: E402
from voice_clone_net import VoiceCloneNet, count_parameters  # noqa: E402


def test_default_net_is_the_shipped_architecture():
    """The time-branch option must leave vc-cnn-1.0.0's network exactly as shipped."""
    sidecar = json.loads((REPO / "streamguard" / "models" / "voice_clone.json").read_text())
    assert count_parameters(VoiceCloneNet()) == sidecar["onnx"]["parameters"]
    assert VoiceCloneNet().time is None


def test_time_branch_exports_and_ignores_gain(tmp_path):
    torch.manual_seed(0)
    model = VoiceCloneNet(time_branch=True).eval()
    assert count_parameters(model) > count_parameters(VoiceCloneNet())
    rng = np.random.default_rng(0)
    t = np.arange(tvc.INPUT_SAMPLES) / tvc.SAMPLE_RATE
    pulses = (np.sin(2 * np.pi * 120 * t) > 0.99).astype(np.float32)  # a 120 Hz pulse train
    windows = np.stack([0.3 * pulses, 0.05 * rng.standard_normal(tvc.INPUT_SAMPLES)])
    windows = windows.astype(np.float32)
    with torch.no_grad():
        loud = model(torch.from_numpy(windows)).numpy()
        quiet = model(torch.from_numpy(windows * 0.05)).numpy()
    assert np.abs(loud - quiet).max() < 1e-3  # both branches normalise the level
    path = tmp_path / "vc.onnx"
    tvc.export_onnx(model, path)
    assert tvc.verify_onnx(model, path, windows) < 1e-3
