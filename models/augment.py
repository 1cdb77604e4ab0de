"""Channel augmentation for training the voice-clone detector.

Real calls do not arrive as clean 16 kHz studio audio: they are narrowband
G.711 (μ-law in North America / Japan, A-law elsewhere), Opus in WebRTC and
apps, band-limited by handsets and bridges, noisy, reverberant, at any level,
sometimes clipped, with lost packets. The detector must not learn "clean
wideband = genuine" or "narrowband = synthetic", so every transform here is
applied to both classes with the same probabilities.

All functions take and return float32 mono 16 kHz samples in [-1, 1] and draw
randomness only from the ``numpy.random.Generator`` they are given, so a
seeded run is reproducible.

``phone_channel`` is the fixed evaluation channel (16 k -> 8 k -> μ-law ->
16 k with PyAV's resampler), the same as bench/eer.py uses.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamguard.media.g711 import (
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

SR = 16000
Array = np.ndarray


def to_pcm16(x: Array) -> Array:
    return np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def from_pcm16(pcm: Array) -> Array:
    return pcm.astype(np.float32) / np.float32(32768.0)


def _av_resample(pcm: Array, src: int, dst: int) -> Array:
    """PyAV (libswresample) resampling, as the runtime's StreamResampler does it."""
    res = av.AudioResampler(format="s16", layout="mono", rate=dst)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = src
    frames = list(res.resample(frame)) + list(res.resample(None))
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)


def _fit(x: Array, n: int) -> Array:
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


def phone_channel(x: Array) -> Array:
    """Fixed evaluation channel: 16 kHz -> 8 kHz -> G.711 μ-law -> 16 kHz (PyAV)."""
    narrow = _av_resample(to_pcm16(x), SR, 8000)
    coded = ulaw_decode(ulaw_encode(narrow))
    return from_pcm16(_fit(_av_resample(coded, 8000, SR), len(x)))


def _resample_8k(x: Array, rng: np.random.Generator) -> Array:
    """Down to 8 kHz with either PyAV or a scipy polyphase filter (varied filters)."""
    if rng.random() < 0.5:
        return from_pcm16(_av_resample(to_pcm16(x), SR, 8000))
    return signal.resample_poly(x, 1, 2).astype(np.float32)


def _upsample_16k(x8: Array, n: int, rng: np.random.Generator) -> Array:
    if rng.random() < 0.5:
        return from_pcm16(_fit(_av_resample(to_pcm16(x8), 8000, SR), n))
    return _fit(signal.resample_poly(x8, 2, 1).astype(np.float32), n)


def g711_roundtrip(x: Array, rng: np.random.Generator, law: str = "ulaw") -> Array:
    """Narrowband G.711 call leg: 8 kHz, μ-law or A-law, back to 16 kHz."""
    x8 = to_pcm16(_resample_8k(x, rng))
    x8 = ulaw_decode(ulaw_encode(x8)) if law == "ulaw" else alaw_decode(alaw_encode(x8))
    return _upsample_16k(from_pcm16(x8), len(x), rng)


# (encoder, decoder, sample rate, bit rates, encoder options, delay in samples at 16 kHz)
CODECS: dict[str, tuple[str, str, int, tuple[int, ...], dict[str, str]]] = {
    # WebRTC / app calls
    "opus": ("libopus", "libopus", 16000, tuple(range(12000, 33000, 2000)),
             {"application": "voip"}),
    # mobile narrowband (GSM/UMTS AMR-NB, 4.75-12.2 kbit/s)
    "amrnb": ("libopencore_amrnb", "amrnb", 8000,
              (4750, 5150, 5900, 6700, 7400, 7950, 10200, 12200), {}),
    # HD-voice desk phones and Asterisk prompts
    "g722": ("g722", "g722", 16000, (64000,), {}),
    # recorded / streamed / voicemail audio
    "mp3": ("libmp3lame", "mp3float", 16000, (24000, 32000, 48000, 64000, 96000), {}),
    "aac": ("aac", "aac", 16000, (24000, 32000, 48000, 64000), {}),
}


def codec_roundtrip(x: Array, rng: np.random.Generator, name: str,
                    bitrate: int | None = None) -> Array:
    """Encode and decode with a PyAV (FFmpeg) codec, back at 16 kHz, time-aligned."""
    enc_name, dec_name, rate, rates, options = CODECS[name]
    bitrate = bitrate or int(rates[int(rng.integers(len(rates)))])
    enc = av.CodecContext.create(enc_name, "w")
    fmt = enc.codec.audio_formats[0].name if enc.codec.audio_formats else "s16"
    if name in ("opus", "amrnb", "g722"):
        fmt = "s16"
    enc.sample_rate = rate
    enc.layout = "mono"
    enc.format = fmt
    enc.bit_rate = bitrate
    enc.time_base = Fraction(1, rate)
    if options:
        enc.options = options
    pcm = to_pcm16(x) if rate == SR else _av_resample(to_pcm16(x), SR, rate)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    if fmt != "s16":
        conv = av.AudioResampler(format=fmt, layout="mono", rate=rate)
        frames = list(conv.resample(frame)) + list(conv.resample(None))
    else:
        frames = [frame]
    packets = []
    for f in frames:
        packets += list(enc.encode(f))
    packets += list(enc.encode(None))
    dec = av.CodecContext.create(dec_name, "r")
    dec.sample_rate = rate
    dec.layout = "mono"
    parts = []
    out_rate = rate
    for packet in packets:
        for f in dec.decode(packet):
            out_rate = f.sample_rate
            arr = f.to_ndarray()
            if arr.dtype == np.int16:
                arr = arr.astype(np.float32) / 32768.0
            parts.append(arr.astype(np.float32).reshape(-1))
    if not parts:
        return x
    y = np.concatenate(parts)
    if out_rate != SR:
        g = int(np.gcd(out_rate, SR))
        y = signal.resample_poly(y, SR // g, out_rate // g).astype(np.float32)
    return _align(x, y)


def _align(x: Array, y: Array, max_lag: int = 2400) -> Array:
    """Remove the codec delay (found by cross-correlation), fit to len(x)."""
    n = min(len(x), len(y)) - max_lag
    if n > 4000:
        seg = x[: n]
        corr = signal.fftconvolve(y[: n + max_lag], seg[::-1], mode="valid")
        lag = int(np.argmax(np.abs(corr)))
        y = y[lag:]
    return _fit(y, len(x)).astype(np.float32)


def opus_roundtrip(x: Array, rng: np.random.Generator, bitrate: int | None = None) -> Array:
    """libopus at 12-32 kbit/s (16 kHz, VoIP application), decoded back to 16 kHz."""
    return codec_roundtrip(x, rng, "opus", bitrate)


def band_limit(x: Array, rng: np.random.Generator) -> Array:
    """Handset / bridge band-pass: high-pass 50-300 Hz, low-pass 3.4-7.5 kHz."""
    lo = float(rng.uniform(50, 300))
    hi = float(rng.uniform(3400, 7500))
    order = int(rng.integers(2, 7))
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=SR, output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def random_eq(x: Array, rng: np.random.Generator) -> Array:
    """Microphone / handset colouring: a smooth random gain curve, ±8 dB, 3-6 knots."""
    knots = int(rng.integers(3, 7))
    freqs = np.r_[0.0, np.sort(rng.uniform(100, 7800, knots)), SR / 2]
    gains_db = np.r_[0.0, rng.uniform(-8, 8, knots), float(rng.uniform(-12, 4))]
    fir = signal.firwin2(129, freqs, 10 ** (gains_db / 20), fs=SR)
    y = signal.fftconvolve(x, fir, mode="same")
    return (y * (_rms(x) / _rms(y))).astype(np.float32)


def _rms(x: Array) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def pink_noise(n: int, rng: np.random.Generator) -> Array:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return np.fft.irfft(spec, n).astype(np.float32)


SPEED_RATIOS = ((8, 9), (9, 10), (14, 15), (19, 20), (21, 20), (15, 14), (10, 9), (9, 8))


def speed(x: Array, rng: np.random.Generator) -> Array:
    """Speed perturbation (tempo and pitch together, ×0.89-1.13): new "virtual speakers"."""
    up, down = SPEED_RATIOS[int(rng.integers(len(SPEED_RATIOS)))]
    return signal.resample_poly(x, up, down).astype(np.float32)


class SoundBed:
    """Background sounds under the speech of both classes, and alone as genuine audio.

    Callers talk over radios and TVs, wait on hold music, laugh and groan. A
    detector that sees fine timing (VoiceCloneNet's time branch) otherwise hears
    music's sharp onsets and steady partials as synthetic: vc-cnn-tb-rc1, trained
    without music, flagged 45 % of music-on-hold windows; vc-cnn-ens5-rc1, which
    never heard a laugh, flagged 10 % of a laughter reel's windows. Mixed under
    both classes so that the sound does not become a "genuine" cue for speech.
    Draws from its own generator, so switching it on leaves every other
    augmentation draw as it was.
    """

    def __init__(self, tracks: list[Array], rng: np.random.Generator,
                 p_mix: float = 0.35, p_alone: float = 0.05) -> None:
        if not tracks:
            raise ValueError("SoundBed needs at least one track")
        self.tracks, self.rng = tracks, rng
        self.p_mix, self.p_alone = p_mix, p_alone

    def excerpt(self, n: int) -> Array:
        track = self.tracks[int(self.rng.integers(len(self.tracks)))]
        start = int(self.rng.integers(max(1, len(track) - n)))
        return _fit(track[start:start + n], n)

    def mix(self, x: Array) -> Array | None:
        """``x`` with the sound 0-20 dB under it, p_mix of the time; else None."""
        if self.rng.random() >= self.p_mix:
            return None
        sound = self.excerpt(len(x))
        snr = float(self.rng.uniform(0, 20))
        level = _rms(x) / _rms(sound) / (10 ** (snr / 20))
        return (x + level * sound).astype(np.float32)

    def alone(self, seconds: float = 6.0) -> Array | None:
        """A clip of the sound alone to train on as genuine audio, p_alone of the time;
        else None."""
        if self.rng.random() >= self.p_alone:
            return None
        return self.excerpt(int(seconds * SR)) * np.float32(self.rng.uniform(0.3, 1.0))


def babble(n: int, rng: np.random.Generator, others: list[Array],
           talkers: tuple[int, int] = (3, 7)) -> Array:
    """``n`` samples of overlapping talkers (``talkers`` is a half-open range), each
    a random stretch of one of ``others`` at unit RMS."""
    noise = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(*talkers))):
        clip = others[int(rng.integers(len(others)))]
        start = int(rng.integers(max(1, len(clip) - n)))
        seg = _fit(np.tile(clip, n // max(1, len(clip)) + 2)[start:], n)
        noise += seg / _rms(seg)
    return noise


def add_noise(x: Array, rng: np.random.Generator, others: list[Array] | None = None,
              music: SoundBed | None = None) -> Array:
    """Music (when a bed is given, its share of the time), else white or pink noise
    at 5-30 dB SNR, or babble (sum of other clips) at 0-30 dB: a caller in a loud
    room talks over voices as loud as their own (vc-cnn-tb-rc3, the rc2 recipe with
    babble at 5-30 dB, flagged 18 % of the gate's 0 dB babble windows)."""
    if music is not None and (mixed := music.mix(x)) is not None:
        return mixed
    n = len(x)
    kind = rng.choice(["white", "pink", "babble"] if others else ["white", "pink"])
    if kind == "white":
        noise = rng.standard_normal(n).astype(np.float32)
    elif kind == "pink":
        noise = pink_noise(n, rng)
    else:
        assert others is not None
        noise = babble(n, rng, others)
    snr = float(rng.uniform(0 if kind == "babble" else 5, 30))
    gain = _rms(x) / _rms(noise) / (10 ** (snr / 20))
    return (x + gain * noise).astype(np.float32)


def add_crowd(x: Array, rng: np.random.Generator, others: list[Array],
              music: SoundBed | None = None) -> Array:
    """A crowded room: 4-12 talkers at 0-10 dB SNR, and the music bed's share of the
    time music under both (a TV). :func:`add_noise` draws babble for one clip in
    eight at SNRs spread to 30 dB; the five-seed vc-cnn-ens5-rc1 trained so flagged
    10 % of the gate's 0 dB babble windows and 7 % of its TV windows."""
    noise = babble(len(x), rng, others, talkers=(4, 13))
    snr = float(rng.uniform(0, 10))
    y = (x + _rms(x) / _rms(noise) / (10 ** (snr / 20)) * noise).astype(np.float32)
    if music is not None and (mixed := music.mix(y)) is not None:
        return mixed
    return y


def reverb(x: Array, rng: np.random.Generator) -> Array:
    """Synthetic room: direct path plus exponentially decaying noise, RT60 0.15-0.8 s."""
    rt60 = float(rng.uniform(0.15, 0.8))
    length = int(rt60 * SR)
    t = np.arange(length) / SR
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * SR)] = 0.0  # a short gap before the first reflections
    ir = tail * float(rng.uniform(0.05, 0.4)) / np.sqrt(np.sum(tail**2) + 1e-12)
    ir[0] = 1.0
    y = signal.fftconvolve(x, ir)[: len(x)]
    return (y * (_rms(x) / _rms(y))).astype(np.float32)


def gain(x: Array, rng: np.random.Generator) -> Array:
    return (x * 10 ** (float(rng.uniform(-20, 20)) / 20)).astype(np.float32)


def clip(x: Array, rng: np.random.Generator) -> Array:
    """Mild clipping: drive the peak 1-8 dB over full scale, hard clip."""
    peak = float(np.max(np.abs(x))) + 1e-9
    drive = 10 ** (float(rng.uniform(1, 8)) / 20) / peak
    return (np.clip(x * drive, -1.0, 1.0) / drive).astype(np.float32)


def packet_loss(x: Array, rng: np.random.Generator) -> Array:
    """Lost 20 ms packets (1-6 %), concealed by silence or by repeating the last packet."""
    y = x.copy()
    frame = SR // 50
    rate = float(rng.uniform(0.01, 0.06))
    repeat = rng.random() < 0.5
    for start in range(frame, len(y) - frame, frame):
        if rng.random() < rate:
            y[start:start + frame] = y[start - frame:start] * 0.7 if repeat else 0.0
    return y


def augment(x: Array, rng: np.random.Generator, others: list[Array] | None = None,
            p_clean: float = 0.2, music: SoundBed | None = None, crowd: float = 0.0) -> Array:
    """One random channel: room and noise first, then the handset, codec and network.

    About ``p_clean`` of the time the clip passes untouched (only a level
    change), so the model also sees clean wideband audio of both classes.
    ``crowd`` of the remaining clips get :func:`add_crowd` instead of the
    ordinary noise draw (at 0, no extra draw: earlier recipes stay reproducible).
    """
    y = x.astype(np.float32, copy=True)
    if rng.random() < p_clean:
        return np.clip(gain(y, rng), -1.0, 1.0)
    if rng.random() < 0.25:
        y = reverb(y, rng)
    if crowd and others and rng.random() < crowd:
        y = add_crowd(y, rng, others, music)
    elif rng.random() < 0.4:
        y = add_noise(y, rng, others, music)
    if rng.random() < 0.3:
        y = random_eq(y, rng)
    if rng.random() < 0.3:
        y = band_limit(y, rng)
    y = gain(y, rng)
    if rng.random() < 0.1:
        y = clip(y, rng)
    y = np.clip(y, -1.0, 1.0)
    codec = str(rng.choice(["none", "ulaw", "alaw", "opus", "amrnb", "g722", "mp3", "aac"],
                           p=[0.25, 0.25, 0.1, 0.15, 0.07, 0.06, 0.07, 0.05]))
    if codec in ("ulaw", "alaw"):
        y = g711_roundtrip(y, rng, codec)
    elif codec != "none":
        y = codec_roundtrip(y, rng, codec)
    if rng.random() < 0.1:
        y = packet_loss(y, rng)
    return from_pcm16(to_pcm16(y))
