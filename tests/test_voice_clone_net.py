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
from voice_clone_net import SeedEnsemble, VoiceCloneNet, count_parameters  # noqa: E402


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


def test_a_seed_ensemble_exports_as_one_graph_whose_margin_is_the_mean_member_z_score(tmp_path):
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(VoiceCloneNet().eval())
    ensemble = SeedEnsemble(members, centre=[0.5, -1.0], scale=[2.0, 0.25]).eval()
    windows = (0.1 * np.random.default_rng(2).standard_normal((3, tvc.INPUT_SAMPLES)))
    windows = windows.astype(np.float32)
    each = [tvc.margins(m, windows) for m in members]
    expected = ((each[0] - 0.5) / 2.0 + (each[1] + 1.0) / 0.25) / 2
    assert np.allclose(tvc.margins(ensemble, windows), expected, atol=1e-5)
    # the same mean from margins already scored, as the leave-one-family-out benches take it
    references = [np.array([-1.5, 2.5]), np.array([-1.25, -0.75])]  # means 0.5, -1; sds 2, 0.25
    assert np.allclose(tvc.ensemble_margins(each, references), expected, atol=1e-5)
    from bench import loso

    assert loso.combined(each, references) == pytest.approx(expected, abs=1e-5)
    assert loso.combined(each[:1], references[:1]) is each[0]
    path = tmp_path / "ensemble.onnx"
    tvc.export_onnx(ensemble, path)
    assert tvc.verify_onnx(ensemble, path, windows) < 1e-3
    with pytest.raises(ValueError, match="per member"):
        SeedEnsemble(members, centre=[0.0], scale=[1.0])


def test_sound_bed_mixes_its_sound_under_speech_at_0_to_20_db():
    import augment

    rng = np.random.default_rng(0)
    track = (0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 16000)).astype(np.float32)
    speech = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    never = augment.SoundBed([track], np.random.default_rng(1), p_mix=0.0, p_alone=0.0)
    assert never.mix(speech) is None and never.alone() is None
    always = augment.SoundBed([track], np.random.default_rng(1), p_mix=1.0, p_alone=1.0)
    for _ in range(20):
        added = always.mix(speech) - speech
        snr = 20 * np.log10(augment._rms(speech) / augment._rms(added))
        assert 0.0 <= snr <= 20.0 + 1e-3
    alone = always.alone(seconds=2.0)
    assert alone.shape == (32000,) and 0 < np.abs(alone).max() <= 0.3


def test_trainer_music_without_its_package_names_the_fix(monkeypatch, tmp_path):
    import synth_corpus

    monkeypatch.setattr(synth_corpus, "ensure_deb", lambda pkg, cache, fetch=True: None)
    with pytest.raises(tvc.MissingSoundsError, match="apt-get download lincity-ng-data"):
        tvc.music_tracks(tmp_path)


def test_trainer_vocalisations_without_their_package_name_the_fix(monkeypatch, tmp_path):
    import synth_corpus

    monkeypatch.setattr(synth_corpus, "ensure_deb", lambda pkg, cache, fetch=True: None)
    with pytest.raises(tvc.MissingSoundsError, match=r"apt-get download wesnoth-1\.16-data"):
        tvc.vocalisation_reels(0, tmp_path)


def test_a_crowd_is_talkers_at_0_to_10_db_in_place_of_the_ordinary_noise():
    import augment

    rng = np.random.default_rng(0)
    talkers = [(0.1 * rng.standard_normal(8000 + 500 * i)).astype(np.float32)
               for i in range(6)]
    speech = (0.05 * rng.standard_normal(16000)).astype(np.float32)
    for seed in range(20):
        noise = augment.add_crowd(speech, np.random.default_rng(seed), talkers) - speech
        snr = 20 * np.log10(augment._rms(speech) / augment._rms(noise))
        assert 0.0 <= snr <= 10.0 + 1e-3
    crowded = augment.augment(speech, np.random.default_rng(3), talkers, p_clean=0.0, crowd=1.0)
    plain = augment.augment(speech, np.random.default_rng(3), talkers, p_clean=0.0)
    assert not np.array_equal(crowded, plain)


def test_the_phase_cues_music_model_without_its_packages_names_the_fix(monkeypatch):
    import fit_phase_cue
    import synth_corpus

    monkeypatch.setattr(synth_corpus, "ensure_deb", lambda pkg, cache, fetch=True: None)
    with pytest.raises(SystemExit, match=r"music model needs .*apt-get download lincity-ng-data"):
        fit_phase_cue.music_tracks()


def test_resynthesised_spoofs_find_their_own_source_in_the_same_split():
    from pathlib import Path

    def item(rel, label, split):
        fam = rel.split("/")[0]
        return tvc.Item(key=f"corpus/{rel}", path=Path(rel), label=label, family=fam,
                        speaker="s", text="", source="corpus", split=split)

    gen_libri = item("librispeech/1688-142285-0000_c0.flac", 0, "train")
    gen_prompt = item("asterisk/allison_en_agent-incorrect.flac", 0, "train")
    items = [gen_libri, gen_prompt,
             item("world-vc/1688-142285-0000_v1.flac", 1, "train"),
             item("hnm-vocoder/allison_en_agent-incorrect.flac", 1, "train"),
             item("world-vc/allison_en_agent-incorrect.flac", 1, "test"),  # other split
             item("piper-joe/0001.flac", 1, "train")]  # TTS: no source recording
    pairs = tvc.resynthesis_sources(items)
    assert pairs == {"corpus/world-vc/1688-142285-0000_v1.flac": gen_libri,
                     "corpus/hnm-vocoder/allison_en_agent-incorrect.flac": gen_prompt}
