"""The shipped voice-clone model: contract, quality on held-out data, the demo calls."""

import json

import numpy as np
import pytest

from bench.eer import phone_channel
from bench.metrics import eer
from gateway.cli import main
from gateway.demo import bundled_samples
from streamguard.config import bundled_model_path
from streamguard.detectors import VoiceCloneDetector
from streamguard.inference import OnnxModel
from streamguard.media import decode_file, pcm16_to_float

from .conftest import REPO, SPEECH


@pytest.fixture(scope="module")
def model():
    return OnnxModel(bundled_model_path())


def test_model_follows_the_contract(model):
    info = model.info
    assert info.input_samples == 64600 and info.sample_rate == 16000
    assert info.calibration.method == "platt" and info.calibration.n > 0
    assert info.version and info.bonafide_index == 1
    logits = model.run(np.zeros((3, 64600), dtype=np.float32))
    assert logits.shape == (3, 2) and np.isfinite(logits).all()


@pytest.mark.skipif(not SPEECH.exists(), reason="shared corpus not present")
@pytest.mark.parametrize("channel", ["wideband", "mulaw8k"])
def test_held_out_split_of_shared_corpus(model, channel):
    import csv

    split = json.loads((REPO / "models" / "splits.json").read_text())["shared"]
    with (SPEECH / "labels.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if split.get(r["path"]) == "test"]
    assert {r["label"] for r in rows} == {"bonafide", "spoof"}
    detector = VoiceCloneDetector(model.info)
    margins, labels = [], []
    for row in rows:
        pcm = decode_file(SPEECH / row["path"]).pcm
        if channel == "mulaw8k":
            pcm = phone_channel(pcm)
        x = detector.prepare(pcm16_to_float(pcm))[None, :]
        margins.append(detector.score(model.run(x)[0]).margin)
        labels.append(int(row["label"] == "spoof"))
    value, _ = eer(np.array(margins), np.array(labels))
    assert value <= 0.10, f"EER {value:.1%} on the held-out split ({channel})"


def test_bundled_sample_calls_get_the_right_verdicts(capsys):
    genuine, synthetic = bundled_samples()
    assert main(["scan", "--json", genuine, synthetic]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["verdict"] == "clear", records[0]
    assert records[1]["verdict"] == "synthetic", records[1]


def test_demo_runs_live_on_the_bundled_calls(capsys):
    assert main(["demo", "--speed", "25"]) == 0
    out = capsys.readouterr().out
    assert "genuine_call" in out and "synthetic_call" in out
    finals = [line for line in out.splitlines() if line.startswith("==")]
    assert any("genuine_call" in line and "FINAL CLEAR" in line for line in finals), finals
    assert any("synthetic_call" in line and "FINAL SYNTHETIC" in line for line in finals), finals


def test_committed_unseen_family_numbers_belong_to_the_shipped_model(model):
    """bench/results/eer.json's never-seen families: this model, and truly never seen."""
    unseen = json.loads((REPO / "bench" / "results" / "eer.json").read_text())["unseen_families"]
    trained = model.info.extra["trained_families"]
    assert unseen["shipped_trained_on"] == trained
    shipped = unseen["models"]["shipped"]
    assert shipped["version"] == model.info.version
    for channel in ("wideband", "mulaw8k"):
        families = shipped[channel]["per_family"]
        assert families and not set(families) & set(trained)
        assert all(f["n_spoof"] > 0 and 0 <= f["fnr_pct"] <= 100 for f in families.values())


def test_committed_candidate_numbers_are_on_families_each_candidate_never_saw():
    """bench/results/candidates/: unshipped models the card weighs against the shipped one."""
    results = sorted((REPO / "bench" / "results" / "candidates").glob("*.json"))
    scored = [p for p in results if not p.stem.endswith("_failure_modes")]
    assert scored
    for path in scored:
        doc = json.loads(path.read_text())
        candidate = doc["models"]["candidate"]
        assert candidate["version"] == path.stem
        gate = json.loads(path.with_name(f"{path.stem}_failure_modes.json").read_text())
        assert gate["model"] == path.stem and "passed" in gate["gate"]
        for channel in ("wideband", "mulaw8k"):
            families = candidate[channel]["per_family"]
            assert families and not set(families) & set(doc["candidate_trained_on"])
