"""The relative-phase-shift cue of bench/relative_phase.py measures what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from bench import relative_phase as rp

SR = rp.SR


def harmonic_tone(f0: float, phases: np.ndarray, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(np.cos(2 * np.pi * (k + 1) * f0 * t + p) / (k + 1)
               for k, p in enumerate(phases))


def test_yin_finds_the_f0_and_leaves_noise_unvoiced():
    f0, _ = rp.yin_f0(harmonic_tone(137.0, np.zeros(20)))
    assert np.all(f0 > 0)
    assert np.median(f0) == pytest.approx(137.0, rel=0.005)
    noise = np.random.default_rng(0).normal(0, 0.1, SR)
    f0_noise, _ = rp.yin_f0(noise)
    assert (f0_noise > 0).mean() < 0.2


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
    model = rp.GenuinePhaseModel(np.array(drifting[:30]))
    inliers = model.score(np.array(drifting[30:]))
    fixed = model.score(rp.window_features(harmonic_tone(160.0, np.zeros(16)))[None])
    assert fixed[0] > inliers.max()


def test_score_files_without_the_calibration_reference_are_refused(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("held_out,channel,key,label,family,margin\n"
                   "world-vc,wideband,a,0,librispeech,-1.0\n")
    with pytest.raises(SystemExit, match="split"):
        rp.read_scores(old)


def test_the_hinge_fusion_leaves_the_cnn_alone_until_the_phase_cue_is_sure():
    rng = np.random.default_rng(3)
    cal_cnn, cal_rps = rng.normal(0, 1, 200), rng.normal(5, 2, 200)
    cnn = np.array([0.5, 0.5, 0.5])
    rps = np.array([5.0, np.quantile(cal_rps, 0.5), 40.0])
    fused = rp.fusions(cal_cnn, cal_rps, cnn, rps)
    z_cnn = (cnn - cal_cnn.mean()) / cal_cnn.std()
    assert np.allclose(fused["fused_hinge"][:2], z_cnn[:2])
    assert fused["fused_hinge"][2] > z_cnn[2] + 10
    assert np.allclose(fused["fused"], z_cnn + (rps - cal_rps.mean()) / cal_rps.std())
