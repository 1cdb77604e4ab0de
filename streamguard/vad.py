"""Speech gating with WebRTC's VAD, so silence, tones and noise are not scored.

Anti-spoofing scores on silence are meaningless (and on hold music, often
alarming), so every detector window records how much of it was speech and
windows with too little are skipped rather than scored. DTMF key tones, which
the VAD lets through, are removed by :class:`~streamguard.dtmf.DtmfDetector`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import webrtcvad

from streamguard.dtmf import MIN_RMS, DtmfDetector, frame_power
from streamguard.errors import MediaError

VAD_RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = VAD_RATE * FRAME_MS // 1000

PCM16 = npt.NDArray[np.int16]
Flags = npt.NDArray[np.bool_]


class SpeechGate:
    """Classifies consecutive 20 ms frames of 16 kHz PCM16 as speech or not.

    Input arrives in arbitrary sizes; a remainder shorter than one frame is
    kept until the next call. ``aggressiveness`` is WebRTC's mode 0–3 (3 drops
    the most non-speech; 2 suits noisy phone lines without eating quiet talk).
    """

    def __init__(self, aggressiveness: int = 2) -> None:
        if not 0 <= aggressiveness <= 3:
            raise ValueError("VAD aggressiveness must be 0..3")
        self._vad = webrtcvad.Vad(aggressiveness)
        self._dtmf = DtmfDetector(VAD_RATE, FRAME_SAMPLES)
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, pcm: PCM16) -> tuple[PCM16, Flags]:
        """Return the complete frames now available and one speech flag per frame."""
        data = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        n_frames = len(data) // FRAME_SAMPLES
        flags = np.zeros(n_frames, dtype=np.bool_)
        raw = data[: n_frames * FRAME_SAMPLES].astype("<i2").tobytes()
        step = FRAME_SAMPLES * 2
        try:
            for i in range(n_frames):
                flags[i] = self._vad.is_speech(raw[i * step:(i + 1) * step], VAD_RATE)
        except Exception as exc:  # webrtcvad raises a bare Error type
            raise MediaError(f"VAD rejected a frame: {exc}") from exc
        self._pending = data[n_frames * FRAME_SAMPLES:].copy()
        frames = data[: n_frames * FRAME_SAMPLES]
        # The VAD's hangover marks digital silence after a sound as speech; nothing
        # below the DTMF detector's level floor is speech worth scoring.
        power = frame_power(frames, FRAME_SAMPLES)
        audible = power >= MIN_RMS ** 2
        return frames, flags & audible & ~self._dtmf.flags(frames, power)

    def flush(self) -> tuple[PCM16, Flags]:
        """Pad the last partial frame with silence so no audio is lost at the end."""
        if not len(self._pending):
            return np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.bool_)
        padding = np.zeros(FRAME_SAMPLES - len(self._pending), dtype=np.int16)
        return self.push(padding)

    @property
    def pending_samples(self) -> int:
        return len(self._pending)
