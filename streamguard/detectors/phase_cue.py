"""Relative phase shift (RPS): a genuine-only cue for vocoders the CNN never saw.

Voiced speech is a sum of harmonics of F0. Shifting an analysis window by τ
turns the phase φ_k of harmonic k into φ_k − 2πk·f0·τ, so the relative phase
shift RPS_k = φ_k − k·φ_1 does not depend on where the window sits: it is the
shape of the glottal pulse and the vocal tract (Saratxaga, Hernaez et al.,
"Synthetic speech detection using phase information", Speech Communication
2016). Vocoders that rebuild the excitation from an F0 track set these phases
by rule (zero or fixed offsets, minimum phase), and each rule leaves a
distribution natural speech does not have.

A classifier trained on spoof families learns the direction of the ones it
saw, and a vocoder whose phases are *more* regular than speech then reads as
genuine. So the cue is one-class: a Gaussian of per-window RPS statistics
fitted on genuine speech only, scored as the log Mahalanobis distance. It
never sees a spoof; ``models/fit_phase_cue.py`` fits it. A second Gaussian,
of music, keeps hold music from reading as a vocoder (:func:`excess_z`).

Windows are analysed at 8 kHz in 20 ms frames (the cue only uses harmonics
up to 3.8 kHz, so it reads wideband and telephone audio alike) and every
step is vectorised over frames: about 8 ms of numpy per 4 s window.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamguard.errors import ModelError
from streamguard.inference.onnx_model import Calibration

Array = npt.NDArray[np.float64]

SR = 16_000  # windows arrive at the model's rate
ANALYSIS_SR = 8_000  # and are analysed in the telephone band the cue is built for
HOP = 160  # 20 ms frames
F0_MIN, F0_MAX = 60.0, 400.0
YIN_WINDOW = 200  # 25 ms integration window of the difference function
YIN_THRESHOLD = 0.2
SILENCE_DB = -90.0  # frames below this (dB re full scale 1.0) are never voiced: digital silence
HARMONICS = 16
BAND_TOP_HZ = 3800.0  # harmonics above this are left out: telephony keeps < 4 kHz
STAT_HARMONICS = slice(1, 12)  # RPS_2 .. RPS_12 (RPS_1 is 0 by definition)
RESIDUAL_HARMONICS = slice(1, 7)  # harmonics 2-7: present in every voice under 3.8 kHz
N_FEATURES = 4 * 11 + 3 * 6 + 1
MIN_VOICED_FRAMES = 30  # 0.6 s of voicing; fewer frames give statistics too noisy to judge
ENVELOPE_FFT = 512
SHRINKAGE = 0.05
PHASE_CUE_FILE = "voice_phase.json"
FUSION_RULE = "one_sided_sum"  # rps-1.0.0 shipped "hinge", rps-1.1.0 "sum": both need a refit


def to_analysis_rate(x: npt.NDArray[Any]) -> Array:
    """Halve the sample rate by dropping the upper half of the spectrum: harmonics above
    3.8 kHz are never used, and every later step costs half as much."""
    spectrum = np.fft.rfft(np.asarray(x, dtype=np.float64))
    half = len(x) // 2
    result: Array = np.fft.irfft(spectrum[: half // 2 + 1], half) * (half / len(x))
    return result


def yin_f0(x: npt.NDArray[Any]) -> tuple[Array, npt.NDArray[np.int64]]:
    """F0 per 20 ms frame of a signal at ANALYSIS_SR by YIN (de Cheveigné & Kawahara
    2002); 0 where unvoiced.

    Returns (f0, centre sample of each frame).
    """
    lag_min, lag_max = int(ANALYSIS_SR / F0_MAX), int(ANALYSIS_SR / F0_MIN)
    span = YIN_WINDOW + lag_max
    starts = np.arange(0, len(x) - span, HOP)
    if len(starts) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    frames = x[starts[:, None] + np.arange(span)].astype(np.float64)
    n_fft = 1 << int(np.ceil(np.log2(span + YIN_WINDOW)))  # no wrap-around up to lag_max
    head = np.fft.rfft(frames[:, :YIN_WINDOW], n_fft)
    full = np.fft.rfft(frames, n_fft)
    corr = np.fft.irfft(np.conj(head) * full, n_fft)[:, : lag_max + 1]
    sq = np.cumsum(np.pad(frames**2, ((0, 0), (1, 0))), axis=1)
    energy_at = sq[:, YIN_WINDOW : YIN_WINDOW + lag_max + 1] - sq[:, : lag_max + 1]
    diff = sq[:, YIN_WINDOW : YIN_WINDOW + 1] + energy_at - 2 * corr
    diff[:, 0] = 0.0
    lags = np.arange(lag_max + 1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(np.cumsum(diff[:, 1:], axis=1), 1e-12)
    band = cmnd[:, lag_min : lag_max + 1]
    dips = (band[:, 1:-1] < band[:, :-2]) & (band[:, 1:-1] <= band[:, 2:])
    below = dips & (band[:, 1:-1] < YIN_THRESHOLD)
    first = np.where(below.any(axis=1), below.argmax(axis=1), band[:, 1:-1].argmin(axis=1)) + 1
    rows = np.arange(len(band))
    a, b, c = band[rows, first - 1], band[rows, first], band[rows, first + 1]
    shift = np.clip(0.5 * (a - c) / np.maximum(a - 2 * b + c, 1e-12), -0.5, 0.5)
    lag = lag_min + first + shift
    level = 10 * np.log10(sq[:, YIN_WINDOW] / YIN_WINDOW + 1e-12)
    voiced = (b < YIN_THRESHOLD) & (level > max(level.max() - 40, SILENCE_DB))
    return np.where(voiced, ANALYSIS_SR / lag, 0.0), starts + YIN_WINDOW // 2


def _wrap(angle: Array) -> Array:
    wrapped: Array = np.angle(np.exp(1j * angle))
    return wrapped


def _minimum_phase(f0: Array, log_magnitude: Array, n_band: npt.NDArray[np.int64]) -> Array:
    """Per frame, the phase (radians) at the harmonics k·f0 of the minimum-phase filter
    whose log magnitude is ``log_magnitude`` there: linear between harmonics, held flat
    outside the first ``n_band``, turned into a phase by folding the real cepstrum."""
    rows = np.arange(len(f0))[:, None]
    grid_hz = np.arange(ENVELOPE_FFT // 2 + 1) * ANALYSIS_SR / ENVELOPE_FFT
    position = np.clip(grid_hz[None, :] / f0[:, None] - 1, 0, (n_band - 1)[:, None])
    low = np.minimum(position.astype(np.int64), (n_band - 1)[:, None])
    high = np.minimum(low + 1, (n_band - 1)[:, None])
    frac = position - low
    envelope = (1 - frac) * log_magnitude[rows, low] + frac * log_magnitude[rows, high]
    cepstrum = np.fft.irfft(envelope, ENVELOPE_FFT, axis=1)
    folded = np.zeros_like(cepstrum)
    folded[:, 0] = cepstrum[:, 0]
    folded[:, 1 : ENVELOPE_FFT // 2] = 2 * cepstrum[:, 1 : ENVELOPE_FFT // 2]
    folded[:, ENVELOPE_FFT // 2] = cepstrum[:, ENVELOPE_FFT // 2]
    phase = np.unwrap(np.imag(np.fft.rfft(folded, axis=1)), axis=1)
    at = np.arange(1, HARMONICS + 1)[None, :] * f0[:, None] * ENVELOPE_FFT / ANALYSIS_SR
    index = np.minimum(at.astype(np.int64), ENVELOPE_FFT // 2 - 1)
    frac_at = np.clip(at - index, 0, 1)
    result: Array = (1 - frac_at) * phase[rows, index] + frac_at * phase[rows, index + 1]
    return result


def harmonic_phases(x: npt.NDArray[Any]) -> tuple[Array, Array]:
    """Per voiced frame of ``x`` (at SR): RPS_k = wrap(φ_k − k·φ_1), and what is left of it once the
    RPS of the minimum-phase filter with the frame's harmonic magnitudes is taken
    away. Both (frames, HARMONICS), NaN above BAND_TOP_HZ.

    Each frame is a Hann window of three pitch periods centred on the frame, its
    DFT taken at exactly k·f0. The residual is near 0 when the frame is a pulse
    train through a minimum-phase filter, which is what source-filter vocoders
    such as WORLD synthesise; a human glottal pulse is not minimum phase.
    """
    xd = to_analysis_rate(x)
    f0, centres = yin_f0(xd)
    ks = np.arange(1, HARMONICS + 1)
    periods = np.floor(3 * ANALYSIS_SR / np.where(f0 > 0, f0, F0_MAX) + 0.5)
    half = (periods.astype(np.int64) | 1) // 2
    keep = ((f0 > 0) & (centres - half >= 0) & (centres + half < len(xd))
            & (2 * f0 <= BAND_TOP_HZ))
    f0, centres, half = f0[keep], centres[keep], half[keep]
    if len(f0) == 0:
        return np.zeros((0, HARMONICS)), np.zeros((0, HARMONICS))
    t = np.arange(-half.max(), half.max() + 1)
    inside = np.abs(t)[None, :] <= half[:, None]
    window = np.where(inside, 0.5 + 0.5 * np.cos(np.pi * t[None, :] / half[:, None]), 0.0)
    index = np.clip(centres[:, None] + t[None, :], 0, len(xd) - 1)
    segment = xd[index] * window
    rotation = np.exp(-2j * np.pi * (f0[:, None] / ANALYSIS_SR) * t[None, :])
    kernel = segment.astype(np.complex128)
    spectrum = np.empty((len(f0), HARMONICS), dtype=np.complex128)
    for k in range(HARMONICS):  # harmonic k+1's kernel is rotation^(k+1) times the segment
        kernel *= rotation
        spectrum[:, k] = kernel.sum(axis=1)
    phase = np.angle(spectrum)
    rps = _wrap(phase - ks[None, :] * phase[:, :1])
    in_band = ks[None, :] * f0[:, None] <= BAND_TOP_HZ
    n_band = in_band.sum(axis=1)
    theta = _minimum_phase(f0, np.log(np.abs(spectrum) + 1e-9), n_band)
    residual = np.where(in_band, _wrap(rps - (theta - ks[None, :] * theta[:, :1])), np.nan)
    return np.where(in_band, rps, np.nan), residual


def _circular_stats(angles: Array) -> tuple[Array, Array, Array]:
    """Resultant length, mean cosine and mean sine per column, NaN-aware."""
    ok = ~np.isnan(angles)
    z = np.where(ok, np.exp(1j * np.nan_to_num(angles)), 0)
    mean = z.sum(axis=0) / ok.sum(axis=0).clip(1)
    return np.abs(mean), mean.real, mean.imag


def window_features(x: npt.NDArray[Any]) -> Array:
    """Per-window phase statistics. RPS of harmonics 2-12: how concentrated each
    is (resultant length), its mean cosine, how much it moves frame to frame (mean
    |Δ| and mean cos Δ). Minimum-phase residual of harmonics 2-7: resultant length,
    mean cosine and sine. And the log number of voiced frames. All zero when the
    window has fewer than MIN_VOICED_FRAMES voiced frames."""
    rps, residual = harmonic_phases(x)
    if len(rps) < MIN_VOICED_FRAMES:
        return np.zeros(N_FEATURES)
    r = rps[:, STAT_HARMONICS]
    ok = ~np.isnan(r)
    z = np.where(ok, np.exp(1j * np.nan_to_num(r)), 0)
    mean = z.sum(axis=0) / ok.sum(axis=0).clip(1)
    step = np.angle(z[1:] * np.conj(z[:-1]))
    ok_step = ok[1:] & ok[:-1]
    n_step = ok_step.sum(axis=0).clip(1)
    features: Array = np.r_[
        np.abs(mean),
        mean.real,
        np.where(ok_step, np.abs(step), 0).sum(axis=0) / n_step,
        np.where(ok_step, np.cos(step), 0).sum(axis=0) / n_step,
        *_circular_stats(residual[:, RESIDUAL_HARMONICS]),
        np.log(len(rps)),
    ]
    return features


def voiced_frames(features: Array) -> Array:
    """How many voiced frames each row of window statistics came from (0: too few)."""
    counts: Array = np.where(features[..., -1] > 0, np.exp(features[..., -1]), 0.0)
    return np.rint(counts)


@dataclass(frozen=True)
class GenuinePhaseModel:
    """A Gaussian of one kind of natural audio's RPS statistics (genuine speech, or
    music); distance = log Mahalanobis."""

    mean: Array
    scale: Array
    precision: Array

    @classmethod
    def fit(cls, features: Array) -> GenuinePhaseModel:
        """Standardise, then invert the covariance shrunk towards the identity
        (63 statistics from a few hundred windows: the raw covariance is noisy).
        Only windows the cue would judge (MIN_VOICED_FRAMES) shape it."""
        features = features[voiced_frames(features) >= MIN_VOICED_FRAMES]
        mean = features.mean(axis=0)
        scale = features.std(axis=0) + 1e-6
        z = (features - mean) / scale
        cov = np.cov(z.T) + SHRINKAGE * np.eye(z.shape[1])
        return cls(mean, scale, np.linalg.inv(cov).astype(np.float64))

    def distance(self, features: Array) -> Array:
        z = (features - self.mean) / self.scale
        result: Array = np.log(np.einsum("ij,jk,ik->i", z, self.precision, z) + 1e-9)
        return result

    def judged_distance(self, features: Array) -> Array:
        """:meth:`distance`, NaN where a window had fewer than MIN_VOICED_FRAMES voiced
        frames (nothing to judge the phase on)."""
        judged = voiced_frames(features) >= MIN_VOICED_FRAMES
        result: Array = np.where(judged, self.distance(features), np.nan)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "precision": self.precision.tolist()}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> GenuinePhaseModel:
        mean = np.asarray(doc["mean"], dtype=np.float64)
        scale = np.asarray(doc["scale"], dtype=np.float64)
        precision = np.asarray(doc["precision"], dtype=np.float64)
        if mean.shape != (N_FEATURES,) or scale.shape != (N_FEATURES,) or \
                precision.shape != (N_FEATURES, N_FEATURES):
            raise ValueError(f"phase model needs {N_FEATURES} statistics, got "
                             f"{mean.shape}, {scale.shape}, {precision.shape}")
        return cls(mean, scale, precision)


def excess_z(speech_z: Array, music_z: Array) -> Array:
    """How far a window's phases lie beyond natural audio, in genuine z-scores: the
    speech z-score above the genuine average, capped by the music model's, and 0
    where either says the phases are typical. Music on hold is natural audio whose
    harmonics keep phase relations no speaker makes; without the cap the cue hears
    it as a vocoder. One-sided, because a one-class cue only has evidence when a
    window is novel: phases *more* typical than average are what a vocoder that
    resynthesises from magnitudes alone (random phases) gives too, and counting
    them against the CNN only added noise to its margins on those families. NaN
    (too few voiced frames) stays NaN."""
    result: Array = np.minimum(np.maximum(speech_z, 0.0), np.maximum(music_z, 0.0))
    return result


@dataclass(frozen=True)
class PhaseCue:
    """The cue as shipped beside one CNN (``pairs_with``): the genuine speech model,
    a model of music (natural audio that is not speech), the genuine references
    that put the phase distance on the CNN margin's scale, and the calibration of
    the fused score (``models/fit_phase_cue.py`` writes them).

    The fused margin is the CNN's plus ``phase_weight`` times the phase z-score's
    excess over natural audio (:func:`excess_z`) counted in the CNN margin's
    genuine spread. The CNN knows the families it was trained on, the cue the ones
    whose phases no speaker makes, and a sum lets either carry a window: held out,
    WORLD and HNM fall from 18-28 % EER to under 9 % (``bench.relative_phase``).
    Phases that look natural (a channel vocoder's too) leave the CNN's margin as
    it is. The sum is a new score, so it has its own Platt calibration, fitted
    on the same calibration split as the CNN's.
    """

    version: str
    pairs_with: str
    genuine: GenuinePhaseModel
    music: GenuinePhaseModel
    cnn_sd: float
    phase_weight: float
    phase_mean: float
    phase_sd: float
    calibration: Calibration

    def z(self, distance: Array) -> Array:
        """Distances as z-scores against genuine calibration speech (NaN stays NaN)."""
        result: Array = (distance - self.phase_mean) / self.phase_sd
        return result

    def judged_z(self, features: Array) -> Array:
        """Each row of window statistics' :func:`excess_z`, NaN where a window had
        too few voiced frames to judge."""
        return excess_z(self.z(self.genuine.judged_distance(features)),
                        self.z(self.music.distance(features)))

    def window_z(self, windows: npt.NDArray[Any]) -> Array:
        """:meth:`judged_z` of each window (rows of samples at 16 kHz)."""
        return self.judged_z(np.stack([window_features(w) for w in windows]))

    def fuse(self, margin: float, z: float) -> float:
        """The fused spoof margin of one window; a window the cue cannot judge (NaN
        z) keeps the CNN's margin."""
        return margin if math.isnan(z) else margin + self.phase_weight * self.cnn_sd * z

    def to_dict(self) -> dict[str, Any]:
        cal = self.calibration
        return {
            "name": "voice_phase", "version": self.version, "pairs_with": self.pairs_with,
            "fusion": {"rule": FUSION_RULE, "cnn_sd": self.cnn_sd,
                       "phase_weight": self.phase_weight, "phase_mean": self.phase_mean,
                       "phase_sd": self.phase_sd},
            "calibration": {"method": cal.method, "a": cal.a, "b": cal.b, "n": cal.n},
            "genuine_model": self.genuine.to_dict(),
            "music_model": self.music.to_dict(),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PhaseCue:
        fusion, cal = doc["fusion"], doc["calibration"]
        if fusion.get("rule") != FUSION_RULE:
            raise ValueError(f"unknown fusion rule {fusion.get('rule')!r}: refit the cue "
                             "(models/fit_phase_cue.py)")
        return cls(
            version=str(doc["version"]), pairs_with=str(doc["pairs_with"]),
            genuine=GenuinePhaseModel.from_dict(doc["genuine_model"]),
            music=GenuinePhaseModel.from_dict(doc["music_model"]),
            cnn_sd=float(fusion["cnn_sd"]), phase_weight=float(fusion["phase_weight"]),
            phase_mean=float(fusion["phase_mean"]), phase_sd=float(fusion["phase_sd"]),
            calibration=Calibration(method=str(cal["method"]), a=float(cal["a"]),
                                    b=float(cal["b"]), n=int(cal["n"])),
        )


def load_beside(model_path: Path) -> PhaseCue | None:
    """The phase cue kept in the model's folder (``voice_phase.json``), or None."""
    path = model_path.with_name(PHASE_CUE_FILE)
    if not path.exists():
        return None
    try:
        return PhaseCue.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"phase cue {path} is unreadable: {exc!r}") from exc
