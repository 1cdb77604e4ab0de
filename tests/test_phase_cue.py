"""The relative-phase cue (streamguard/detectors/phase_cue.py) measures what it claims."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from gateway.cli import main
from gateway.demo import bundled_samples
from streamguard.config import GuardConfig, bundled_model_path
from streamguard.detectors import VoiceCloneDetector
from streamguard.detectors import phase_cue as rp
from streamguard.errors import ModelError
from streamguard.guard import Guard
from streamguard.inference import OnnxModel
from streamguard.inference.onnx_model import Calibration
from streamguard.media import decode_file, pcm16_to_float

SR = rp.SR


def harmonic_tone(f0: float, phases: np.ndarray, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.cos(2 * np.pi * (k + 1) * f0 * t + p) / (k + 1)
               for k, p in enumerate(phases))


def test_yin_finds_the_f0_and_leaves_noise_unvoiced():
    f0, _ = rp.yin_f0(rp.to_analysis_rate(harmonic_tone(137.0, np.zeros(20))))
    assert np.all(f0 > 0)
    assert np.median(f0) == pytest.approx(137.0, rel=0.005)
    noise = np.random.default_rng(0).normal(0, 0.1, SR)
    f0_noise, _ = rp.yin_f0(rp.to_analysis_rate(noise))
    assert (f0_noise > 0).mean() < 0.2


def test_the_analysis_rate_keeps_the_telephone_band():
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * 1000.0 * t) + np.sin(2 * np.pi * 6000.0 * t)
    y = rp.to_analysis_rate(x)
    assert len(y) == SR // 2
    spectrum = np.abs(np.fft.rfft(y)) / (len(y) / 2)
    assert spectrum[1000] == pytest.approx(1.0, abs=1e-6)  # 1 Hz bins at 8 kHz, 1 s
    assert spectrum.max() == pytest.approx(1.0, abs=1e-6)  # 6 kHz is gone, not folded


def test_rps_is_the_rule_the_phases_were_set_by_and_ignores_where_the_window_sits():
    phases = np.random.default_rng(1).uniform(-np.pi, np.pi, 20)
    phases[0] = 0.0
    x = harmonic_tone(150.0, phases)
    rps = rp.harmonic_phases(x)[0]
    # a constant phase offset per harmonic: φ_k − k·φ_1 = offset_k at every frame
    k = np.arange(2, 8)
    got = np.angle(np.exp(1j * rps[:, k - 1]))
    want = np.angle(np.exp(1j * phases[k - 1]))
    assert np.allclose(np.angle(np.exp(1j * (got - want))), 0, atol=0.05)
    delayed = rp.harmonic_phases(np.r_[np.zeros(37), x][: len(x)])[0]
    assert np.allclose(np.nanmedian(np.cos(delayed[:, k - 1] - rps[:, k - 1]), axis=0), 1,
                       atol=1e-3)


def test_rps_leaves_out_harmonics_above_the_telephone_band():
    rps, residual = rp.harmonic_phases(harmonic_tone(300.0, np.zeros(16)))
    assert np.isnan(rps[:, 12:]).all()  # 13 × 300 Hz > 3.8 kHz
    assert not np.isnan(rps[:, :12]).any()
    assert np.array_equal(np.isnan(residual), np.isnan(rps))


def test_a_pulse_train_through_a_minimum_phase_filter_leaves_no_residual():
    from scipy.signal import lfilter

    pulses = np.zeros(SR)
    pulses[::100] = 1.0  # 160 Hz
    poles = [0.97 * np.exp(2j * np.pi * f / SR) for f in (500, 1500, 2500)]
    a = np.real(np.poly(poles + [np.conj(p) for p in poles]))
    voice = lfilter([1.0], a, pulses)
    _, residual = rp.harmonic_phases(voice)
    assert np.nanmedian(np.cos(residual[:, 1:7])) > 0.9
    # the same magnitudes, every harmonic in zero phase: far from minimum phase
    _, zero_phase = rp.harmonic_phases(np.real(np.fft.ifft(np.abs(np.fft.fft(voice)))))
    assert np.nanmedian(np.cos(zero_phase[:, 1:7])) < 0.5


def test_fixed_phases_are_far_from_a_genuine_model_of_drifting_phases():
    rng = np.random.default_rng(2)
    drifting = []
    for _ in range(40):  # stand-in for speech: every harmonic's phase wanders
        t = np.arange(SR) / SR
        f0 = rng.uniform(100, 220)
        x = sum(np.cos(2 * np.pi * k * f0 * t + np.cumsum(rng.normal(0, 0.02, SR))) / k
                for k in range(1, 16))
        drifting.append(rp.window_features(x))
    model = rp.GenuinePhaseModel.fit(np.array(drifting[:30]))
    inliers = model.distance(np.array(drifting[30:]))
    fixed = model.distance(rp.window_features(harmonic_tone(160.0, np.zeros(16)))[None])
    assert fixed[0] > inliers.max()


def test_windows_with_too_few_voiced_frames_are_not_judged():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(200, rp.N_FEATURES))
    features[:, -1] = np.log(100)  # every fitted window had 100 voiced frames
    model = rp.GenuinePhaseModel.fit(features)
    voiced_briefly = np.zeros(64600)
    voiced_briefly[:8000] = harmonic_tone(150.0, np.zeros(16))[:8000]  # 0.5 s < 30 frames
    windows = np.stack([np.zeros(64600), rng.normal(0, 0.1, 64600), voiced_briefly,
                        harmonic_tone(150.0, np.zeros(16), seconds=5)[:64600]])
    distances = model.judged_distance(np.stack([rp.window_features(w) for w in windows]))
    assert np.isnan(distances[:3]).all() and np.isfinite(distances[3])


def test_the_fused_margin_adds_the_weighted_phase_z_score_in_the_cnn_margins_units():
    unit = rp.GenuinePhaseModel(np.zeros(rp.N_FEATURES), np.ones(rp.N_FEATURES),
                                np.eye(rp.N_FEATURES))
    cue = rp.PhaseCue(version="t", pairs_with="m", genuine=unit, music=unit, cnn_sd=2.0,
                      phase_weight=0.5, phase_mean=4.0, phase_sd=0.5,
                      calibration=Calibration())
    assert cue.fuse(1.5, np.nan) == 1.5  # nothing voiced to judge: the CNN's margin
    assert cue.fuse(1.5, 0.0) == 1.5  # a typical genuine window adds nothing
    assert cue.fuse(1.5, 2.0) == pytest.approx(1.5 + 0.5 * 2.0 * 2.0)
    assert cue.z(np.array([5.0]))[0] == pytest.approx(2.0)


def test_only_phases_beyond_both_speech_and_music_count():
    speech = np.array([-1.0, 2.0, 2.0, 2.0, -1.0, np.nan])
    music = np.array([5.0, 5.0, 1.0, -3.0, -3.0, 0.0])
    got = rp.excess_z(speech, music)
    # more typical than average speech counts for nothing, neither way
    assert got[:5].tolist() == [0.0, 2.0, 1.0, 0.0, 0.0] and np.isnan(got[5])


def test_the_hold_prompt_is_far_from_speech_but_the_music_model_explains_it():
    cue = rp.load_beside(bundled_model_path())
    assert cue is not None
    x = pcm16_to_float(decode_file("gateway/prompts/hold_music.wav").pcm)
    n = 64600
    x = np.tile(x, n // len(x) + 2)
    features = np.stack([rp.window_features(x[s:s + n]) for s in range(0, 48000, 16000)])
    speech_z = cue.z(cue.genuine.judged_distance(features))
    assert (speech_z > 1.5).all()
    assert (cue.judged_z(features) < speech_z - 1.0).all()


def test_a_cue_file_is_read_beside_its_model_and_a_broken_one_is_refused(tmp_path):
    model_path = tmp_path / "voice_clone.onnx"
    assert rp.load_beside(model_path) is None
    (tmp_path / rp.PHASE_CUE_FILE).write_text('{"version": "x"}')
    with pytest.raises(ModelError, match="unreadable"):
        rp.load_beside(model_path)
    shipped = rp.load_beside(bundled_model_path())
    assert shipped is not None
    doc = shipped.to_dict()
    doc["genuine_model"]["mean"] = doc["genuine_model"]["mean"][:-1]
    (tmp_path / rp.PHASE_CUE_FILE).write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="statistics"):
        rp.load_beside(model_path)
    doc = shipped.to_dict()
    for old_rule in ("hinge", "sum"):  # rps-1.0.0's and 1.1.0's: their files need a refit
        doc["fusion"]["rule"] = old_rule
        (tmp_path / rp.PHASE_CUE_FILE).write_text(json.dumps(doc))
        with pytest.raises(ModelError, match="refit"):
            rp.load_beside(model_path)


def test_the_shipped_cue_pairs_with_the_shipped_model_and_can_be_turned_off():
    model = OnnxModel(bundled_model_path())
    cue = rp.load_beside(bundled_model_path())
    assert cue is not None and cue.pairs_with == model.info.version
    on = Guard.from_config(GuardConfig())
    assert on.detector.phase is not None
    assert on.detector.version == f"{model.info.version}+{cue.version}"
    assert Guard.from_config(GuardConfig(phase_cue=False)).detector.phase is None
    assert GuardConfig.from_mapping({"phase_cue": False}).phase_cue is False  # settings file
    # the pair has its own calibration, and the verdicts' uncertainty comes from it
    assert cue.calibration.method == "platt" and cue.calibration.n > 300
    assert on.detector.calibration == cue.calibration
    assert on._settings.calibration_sd == pytest.approx(2 / cue.calibration.n ** 0.5)
    other = replace(cue, pairs_with="some-other-model")
    with pytest.raises(ModelError, match="fitted for some-other-model"):
        VoiceCloneDetector(model.info, other)


def test_the_batch_carries_the_phase_distance_and_the_score_fuses_it():
    model = OnnxModel(bundled_model_path())
    cue = rp.load_beside(bundled_model_path())
    detector = VoiceCloneDetector(model.info, cue)
    voiced = harmonic_tone(140.0, np.zeros(16), seconds=5)[:64600].astype(np.float32)
    batch = np.stack([0.3 * voiced, np.zeros(64600, dtype=np.float32)])
    rows = detector.batch_runner(model.run)(batch)
    assert rows.shape == (2, 3)
    assert np.isfinite(rows[0, 2]) and np.isnan(rows[1, 2])
    alone = VoiceCloneDetector(model.info)
    cal = cue.calibration
    # a tone with every harmonic in phase is nothing like speech: the cue pushes it up
    fixed = detector.score(rows[0])
    assert fixed.phase_z is not None and fixed.phase_z > 3
    assert fixed.margin == alone.score(rows[0, :2]).margin
    assert fixed.logit == pytest.approx(
        cal.a * (fixed.margin + cue.phase_weight * cue.cnn_sd * fixed.phase_z) + cal.b, abs=1e-4)
    assert fixed.logit > alone.score(rows[0, :2]).logit + 1.0
    # where the cue cannot judge, the CNN's margin goes through the pair's calibration
    silent = detector.score(rows[1])
    assert silent.phase_z is None
    assert silent.logit == pytest.approx(cal.a * silent.margin + cal.b, abs=1e-6)


def test_scan_names_the_pair_and_can_run_the_model_alone(capsys):
    genuine, _ = bundled_samples()
    assert main(["scan", "--json", genuine]) == 0
    assert main(["scan", "--json", "--no-phase-cue", genuine]) == 0
    with_cue, alone = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    version = OnnxModel(bundled_model_path()).info.version
    assert with_cue["model_version"].startswith(f"{version}+rps-")
    assert alone["model_version"] == version
    assert with_cue["verdict"] == alone["verdict"] == "clear"
    # each window says what the cue made of it; genuine speech looks like genuine speech
    judged = [w["phase_z"] for w in with_cue["windows"] if w["phase_z"] is not None]
    assert judged and np.median(judged) < 1.0
    assert all(w["phase_z"] is None for w in alone["windows"])


def test_the_eer_bench_scores_the_pair_as_the_guard_runs_it():
    from bench.eer import PAIR, phase_of, score_files

    genuine, synthetic = bundled_samples()
    audio = [decode_file(path).pcm for path in (genuine, synthetic)]
    audio.append(np.zeros(64600, dtype=np.int16))  # nothing voiced: the CNN alone
    model = OnnxModel(bundled_model_path())
    assert phase_of("shipped", bundled_model_path()) is None
    cue = phase_of(PAIR, bundled_model_path())
    assert cue is not None
    alone = score_files(model, audio)
    fused = score_files(model, audio, phase=cue)
    detector = VoiceCloneDetector(model.info, cue)
    z = cue.window_z(np.stack([detector.prepare(pcm16_to_float(pcm)) for pcm in audio]))
    assert np.isfinite(z[:2]).all() and np.isnan(z[2])
    assert fused[:2] == pytest.approx(alone[:2] + cue.phase_weight * cue.cnn_sd * z[:2],
                                      abs=1e-4)
    assert fused[2] == pytest.approx(alone[2])
