"""GE2E front end in numpy: level normalisation, silence trimming, partials, mel power.

Why numpy and these exact steps: the pretrained speaker encoder only gives
the embeddings it was validated with when its input is built the way it was
trained (``../shared/reference/ge2e/SPEC.md`` §1–5, checked against
``ref_mels.npz`` in tests/test_speaker.py). Every constant here is part of
that contract; change one and parity with the reference embeddings is gone.

Audio enters as float32 in [-1, 1] at 16 kHz (``pcm16_to_float`` of our
decoded PCM, the same scaling soundfile uses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import webrtcvad

from streamguard.errors import MediaError

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms frames
HOP = 160  # 10 ms hop
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
PARTIAL_SAMPLES = PARTIAL_FRAMES * HOP
TARGET_DBFS = -30.0
VAD_WINDOW = 480  # 30 ms
VAD_MODE = 3
VAD_SMOOTH = 8
VAD_MAX_SILENCE = 6
DEFAULT_RATE = 1.3  # partials per second
DEFAULT_MIN_COVERAGE = 0.75

Float32 = npt.NDArray[np.float32]
Bool = npt.NDArray[np.bool_]


def normalize_volume(wav: Float32, target_dbfs: float = TARGET_DBFS) -> Float32:
    """Raise quiet clips to ``target_dbfs`` RMS; never attenuate loud ones.

    Unlike the original, silence (RMS 0) is returned unchanged instead of NaN.
    """
    wav = np.asarray(wav, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if len(wav) else 0.0
    if rms == 0.0:
        return wav
    gain_db = target_dbfs - 20.0 * math.log10(rms)
    if gain_db < 0:
        return wav
    return (wav * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def vad_flags(wav: Float32) -> Bool:
    """WebRTC VAD (mode 3) speech flag per whole 30 ms window of ``wav``.

    Samples are quantised as ``round(x * 32767)``; values beyond full scale
    are clipped (the original wrapped them around, which is noise, not speech).
    """
    n = len(wav) // VAD_WINDOW
    pcm = np.clip(np.round(np.asarray(wav[: n * VAD_WINDOW], np.float64) * 32767),
                  -32768, 32767).astype("<i2")
    raw = pcm.tobytes()
    vad = webrtcvad.Vad(VAD_MODE)
    step = VAD_WINDOW * 2
    flags = np.zeros(n, dtype=np.bool_)
    try:
        for k in range(n):
            flags[k] = vad.is_speech(raw[k * step:(k + 1) * step], SAMPLE_RATE)
    except Exception as exc:  # webrtcvad raises a bare Error type
        raise MediaError(f"VAD rejected a frame: {exc}") from exc
    return flags


def keep_mask(flags: Bool) -> Bool:
    """Which 30 ms windows survive trimming: smoothed speech, dilated by ±3 windows.

    Smoothing is a width-8 moving average (3 before, 4 after, zero padded)
    rounded half-to-even, so a window needs at least 5 of 8 voiced neighbours.
    """
    n = len(flags)
    if n == 0:
        return np.zeros(0, dtype=np.bool_)
    padded = np.concatenate([np.zeros(3), flags.astype(np.float64), np.zeros(4)])
    voiced = np.round(np.convolve(padded, np.ones(VAD_SMOOTH), mode="valid") / VAD_SMOOTH) > 0
    reach = VAD_MAX_SILENCE // 2
    around = np.concatenate([np.zeros(reach), voiced.astype(np.float64), np.zeros(reach)])
    kept = np.convolve(around, np.ones(VAD_MAX_SILENCE + 1), mode="valid") > 0
    return np.asarray(kept[:n], dtype=np.bool_)


def trim_long_silences(wav: Float32) -> Float32:
    """Drop the 30 ms windows the VAD judges to be long silences (SPEC §3)."""
    n = len(wav) // VAD_WINDOW
    mask = keep_mask(vad_flags(wav))
    windows = np.asarray(wav[: n * VAD_WINDOW], dtype=np.float32).reshape(n, VAD_WINDOW)
    return windows[mask].reshape(-1)


def preprocess(wav: Float32) -> Float32:
    """Level normalisation then silence trimming, as the encoder was trained."""
    return trim_long_silences(normalize_volume(wav))


@dataclass(frozen=True, slots=True)
class Partials:
    """Where partial utterances start (in mel frames) and the padded wav they cover."""

    starts: npt.NDArray[np.int64]
    wav: Float32

    def __len__(self) -> int:
        return len(self.starts)


def partial_starts(n_samples: int, rate: float = DEFAULT_RATE,
                   min_coverage: float = DEFAULT_MIN_COVERAGE) -> npt.NDArray[np.int64]:
    """Start frames of the 1.6 s partials over ``n_samples`` (SPEC §4).

    Consecutive partials start ``round(16000 / rate / 160)`` frames apart; a
    last partial covering less than ``min_coverage`` of 1.6 s is dropped,
    unless it is the only one.
    """
    if not 0 < min_coverage <= 1:
        raise ValueError("min_coverage must be in (0, 1]")
    step = round(SAMPLE_RATE / rate / HOP)
    if step < 1:
        raise ValueError("rate is too high: partials would not advance")
    n_frames = math.ceil((n_samples + 1) / HOP)
    starts = np.arange(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step, dtype=np.int64)
    coverage = (n_samples - int(starts[-1]) * HOP) / PARTIAL_SAMPLES
    if coverage < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return starts


def split_partials(wav: Float32, rate: float = DEFAULT_RATE,
                   min_coverage: float = DEFAULT_MIN_COVERAGE) -> Partials:
    """Partial starts, with ``wav`` zero-padded so the last partial is complete."""
    starts = partial_starts(len(wav), rate, min_coverage)
    end = (int(starts[-1]) + PARTIAL_FRAMES) * HOP
    if end >= len(wav):
        wav = np.pad(wav, (0, end - len(wav)))
    return Partials(starts, np.asarray(wav, dtype=np.float32))


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = math.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    mel[above] = min_log_hz / f_sp + np.log(hz[above] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    hz = mel * f_sp
    above = mel >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mel[above] - min_log_mel))
    return hz


@lru_cache(maxsize=4)
def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT,
                   n_mels: int = N_MELS) -> npt.NDArray[np.float64]:
    """(n_mels, n_fft/2+1) triangles evenly spaced in Slaney mels, area-normalised."""
    fft_hz = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges_mel = np.linspace(_hz_to_mel(np.array([0.0]))[0],
                            _hz_to_mel(np.array([sr / 2.0]))[0], n_mels + 2)
    edges = _mel_to_hz(edges_mel)
    widths = np.diff(edges)
    bank = np.zeros((n_mels, len(fft_hz)))
    for m in range(n_mels):
        rising = (fft_hz - edges[m]) / widths[m]
        falling = (edges[m + 2] - fft_hz) / widths[m + 1]
        bank[m] = np.maximum(0.0, np.minimum(rising, falling))
    bank *= (2.0 / (edges[2:n_mels + 2] - edges[:n_mels]))[:, None]
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=1)
def _hann() -> npt.NDArray[np.float64]:
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic
    window.setflags(write=False)
    return window


def mel_spectrogram(wav: Float32) -> Float32:
    """(T, 40) mel *power* (not log), T = 1 + len // 160, centred zero-padded frames."""
    half = N_FFT // 2
    padded = np.pad(np.asarray(wav, dtype=np.float64), (half, half))
    n_frames = 1 + len(wav) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2
    return np.asarray(power @ mel_filterbank().T, dtype=np.float32)


def partial_mels(wav: Float32, rate: float = DEFAULT_RATE,
                 min_coverage: float = DEFAULT_MIN_COVERAGE) -> Float32:
    """(B, 160, 40) network input for a preprocessed wav: one mel, sliced per partial."""
    parts = split_partials(wav, rate, min_coverage)
    mel = mel_spectrogram(parts.wav)
    index = parts.starts[:, None] + np.arange(PARTIAL_FRAMES)[None, :]
    return np.ascontiguousarray(mel[index])
