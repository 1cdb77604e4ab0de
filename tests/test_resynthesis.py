"""The corpus generator's own vocoders do what their family names claim.

A phase-vocoder "voice changer" must move the pitch by the requested factor
and keep the duration; the harmonic-plus-noise vocoder must put harmonics of
the F0 it is given below the maximum voiced frequency and noise above it,
at the level of the input; the channel vocoder must voice the F0 it is given
with the band levels of its input. Pure numpy / scipy: no pyworld, no corpus.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("soundfile")

SR = 16000


@pytest.fixture()
def sc(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "models"))
    import synth_corpus

    return synth_corpus


def harmonic_tone(f0: float, seconds: float = 1.5, top: float = 7000.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    ks = np.arange(1, int(top / f0) + 1)
    return 0.3 * np.sum(np.cos(2 * np.pi * f0 * ks[:, None] * t) / ks[:, None], axis=0)


def fundamental(y: np.ndarray, lo: float = 60.0, hi: float = 400.0) -> float:
    """Strongest spectral peak between lo and hi Hz (the 1/k tone's fundamental)."""
    seg = y[SR // 4: -SR // 4] * np.hanning(len(y) - SR // 2)
    spec = np.abs(np.fft.rfft(seg, 8 * len(seg)))
    freqs = np.fft.rfftfreq(8 * len(seg), 1 / SR)
    band = (freqs > lo) & (freqs < hi)
    return float(freqs[band][np.argmax(spec[band])])


@pytest.mark.parametrize("p", [0.8, 1.25])
@pytest.mark.parametrize("n_fft", [512, 1024])
@pytest.mark.parametrize("lock", [False, True])
def test_phase_vocoder_moves_pitch_and_keeps_duration(sc, p, n_fft, lock):
    x = harmonic_tone(150.0)
    y = sc.pitch_shift(x, p, n_fft, lock)
    assert len(x) - n_fft // 4 <= len(y) <= len(x)  # kept to within one hop
    assert fundamental(y) == pytest.approx(150.0 * p, rel=0.02)
    assert np.sqrt(np.mean(y ** 2)) > 0.3 * np.sqrt(np.mean(x ** 2))


def test_harmonic_plus_noise_splits_at_the_maximum_voiced_frequency(sc):
    rng = np.random.default_rng(0)
    x = harmonic_tone(200.0) + 0.01 * rng.standard_normal(int(1.5 * SR))
    n_frames = len(x) // sc.HNM_HOP + 1
    f0 = np.full(n_frames, 160.0)  # a pitch edit: harmonics of 160 Hz, envelope of the input
    y = sc.harmonic_plus_noise(x, f0, mvf=4000.0, lifter=30, random_phases=False, rng=rng)
    assert len(y) == len(x)
    spec = np.abs(np.fft.rfft(y[SR // 4: -SR // 4]))
    freqs = np.fft.rfftfreq(len(y) - SR // 2, 1 / SR)
    on = [spec[np.argmin(np.abs(freqs - k * 160.0))] for k in range(2, 24)]  # < 4 kHz
    off = [spec[np.argmin(np.abs(freqs - (k + 0.5) * 160.0))] for k in range(2, 24)]
    assert np.median(on) > 30 * np.median(off)  # line spectrum below the MVF
    old = [spec[np.argmin(np.abs(freqs - k * 200.0))] for k in range(1, 20) if k % 4]
    assert np.median(old) < np.median(on) / 30  # the input's 200 Hz series is gone
    hi_on = [spec[np.argmin(np.abs(freqs - k * 160.0))] for k in range(27, 40)]  # > 4 kHz
    hi_off = [spec[np.argmin(np.abs(freqs - (k + 0.5) * 160.0))] for k in range(27, 40)]
    assert np.median(hi_on) < 3 * np.median(hi_off)  # noise above it
    level = 20 * np.log10(np.sqrt(np.mean(y ** 2)) / np.sqrt(np.mean(x ** 2)))
    assert abs(level) < 3.0


def test_unvoiced_frames_are_noise_only(sc):
    rng = np.random.default_rng(1)
    x = 0.05 * rng.standard_normal(SR)
    f0 = np.zeros(len(x) // sc.HNM_HOP + 1)
    y = sc.harmonic_plus_noise(x, f0, mvf=4000.0, lifter=30, random_phases=True, rng=rng)
    level = 20 * np.log10(np.sqrt(np.mean(y ** 2)) / np.sqrt(np.mean(x ** 2)))
    assert abs(level) < 3.0
    spec = np.abs(np.fft.rfft(y))
    assert spec.max() < 20 * np.median(spec)  # flat-ish: no harmonic lines


def test_channel_vocoder_voices_the_given_f0_with_the_input_band_levels(sc):
    rng = np.random.default_rng(2)
    x = harmonic_tone(200.0, top=3000.0) + 0.003 * rng.standard_normal(int(1.5 * SR))
    f0_s = np.full(len(x), 130.0)  # a pitch edit: pulses at 130 Hz, bands of the input
    y = sc.channel_vocoder(x, f0_s, bands=24, follow_hz=30.0, noise_above=5000.0,
                           open_quotient=0.6, rng=rng)
    assert len(y) == len(x) and np.isfinite(y).all()
    assert fundamental(y, 90.0, 180.0) == pytest.approx(130.0, rel=0.03)
    spec = np.abs(np.fft.rfft(y[SR // 4: -SR // 4])) ** 2
    freqs = np.fft.rfftfreq(len(y) - SR // 2, 1 / SR)
    low, high = spec[(freqs > 200) & (freqs < 3000)].sum(), spec[freqs > 3500].sum()
    assert low > 100 * high  # the input has nothing above 3 kHz; neither has its copy


def test_channel_vocoder_noise_excites_unvoiced_samples(sc):
    rng = np.random.default_rng(3)
    x = 0.05 * rng.standard_normal(SR)
    y = sc.channel_vocoder(x, np.zeros(SR), bands=16, follow_hz=40.0, noise_above=4000.0,
                           open_quotient=0.5, rng=rng)
    spec = np.abs(np.fft.rfft(y))
    assert spec[200:].max() < 20 * np.median(spec[200:])  # flat-ish: no pulse lines
    assert np.sqrt(np.mean(y ** 2)) > 0.1 * np.sqrt(np.mean(x ** 2))
