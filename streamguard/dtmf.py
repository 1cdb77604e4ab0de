"""DTMF key-press detection on 20 ms frames, so key tones are never scored as speech.

WebRTC's VAD passes rapid DTMF sequences (two steady tones look voiced to
it), and a spoofing model has never seen them: measured, a caller typing a
card number could push a call to ``suspect``. A frame is a key tone when one
ITU-T Q.23 low-group and one high-group frequency together carry almost all
of its energy, which speech (many harmonics, formant-shaped) does not do.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

LOW_GROUP_HZ = (697.0, 770.0, 852.0, 941.0)
HIGH_GROUP_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
TONE_FRACTION = 0.6  # share of the frame energy the strongest low + high tone must hold
EACH_FRACTION = 0.08  # and each of the two (a twist of up to ~10 dB between them)
# A frame right after a key tone counts as one at half the share: the tone's tail
# (its off-ramp, a codec's smearing) shares the frame with whatever follows.
TAIL_FRACTION = 0.3
MIN_RMS = 30.0  # PCM16 units (≈ -61 dBFS): quieter frames are left to the VAD


def frame_power(pcm: npt.NDArray[np.int16], frame_samples: int) -> npt.NDArray[np.float64]:
    """Mean square of each complete frame of ``pcm`` (PCM16 units squared)."""
    count = len(pcm) // frame_samples
    frames = pcm[: count * frame_samples].reshape(-1, frame_samples).astype(np.float64)
    power: npt.NDArray[np.float64] = np.mean(frames ** 2, axis=1)
    return power


class DtmfDetector:
    """Flags frames of ``frame_samples`` PCM16 samples at ``rate`` Hz that are DTMF tones."""

    def __init__(self, rate: int, frame_samples: int) -> None:
        n = np.arange(frame_samples)
        window = np.hanning(frame_samples + 2)[1:-1]
        freqs = np.array(LOW_GROUP_HZ + HIGH_GROUP_HZ)
        angle = 2.0 * np.pi * freqs[None, :] * n[:, None] / rate
        self._cos = np.cos(angle) * window[:, None]
        self._sin = np.sin(angle) * window[:, None]
        self._window = window
        # A pure tone's |X(f)|² is this fraction of its windowed energy: rescale it to 1.
        self._unit = 2.0 * float(np.sum(window ** 2)) / float(np.sum(window)) ** 2
        self.frame_samples = frame_samples
        self._in_tone = False

    def flags(self, pcm: npt.NDArray[np.int16],
              mean_power: npt.NDArray[np.float64] | None = None) -> npt.NDArray[np.bool_]:
        """One flag per complete frame of ``pcm``: True where the frame is a key tone.

        Frames are expected in stream order across calls (the tail rule looks back
        one frame). ``mean_power`` (mean square per frame, from :func:`frame_power`)
        saves recomputing it when the caller has it already.
        """
        if mean_power is None:
            mean_power = frame_power(pcm, self.frame_samples)
        count = len(mean_power)
        frames = pcm[: count * self.frame_samples].reshape(-1, self.frame_samples)
        frames = frames.astype(np.float64)
        power = (frames @ self._cos) ** 2 + (frames @ self._sin) ** 2
        energy = np.sum((frames * self._window) ** 2, axis=1)
        scale = self._unit / np.maximum(energy, 1e-9)
        low = power[:, : len(LOW_GROUP_HZ)].max(axis=1) * scale
        high = power[:, len(LOW_GROUP_HZ):].max(axis=1) * scale
        weaker = np.minimum(low, high)
        loud = mean_power >= MIN_RMS ** 2
        strong = loud & (low + high >= TONE_FRACTION) & (weaker >= EACH_FRACTION)
        tail = loud & (low + high >= TAIL_FRACTION) & (weaker >= EACH_FRACTION / 2)
        out = np.zeros(count, dtype=np.bool_)
        for i in range(count):
            out[i] = strong[i] or (self._in_tone and tail[i])
            self._in_tone = bool(out[i])
        return out
