"""Sliding analysis windows over a live stream, gated by speech.

Anti-spoofing models judge a fixed span (AASIST: 64 600 samples, 4.04 s).
Streams arrive in 20 ms frames, so the windower keeps the latest span in a
ring and cuts a window every ``hop``. The first window is cut early, after
``first_after`` samples, so a verdict can appear within ~2.5 s of speech; the
detector tiles such a short window to full length, as AASIST's recipe does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamguard.media.pcm import pcm16_to_float
from streamguard.media.ring import RingBuffer


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Window geometry in samples at ``sample_rate``.

    ``min_speech_ratio``: fraction of VAD speech frames a window needs to be
    scored. ``min_samples``: shortest audio worth a verdict at all (tail
    windows at the end of a stream, very short files).
    """

    length: int = 64600
    hop: int = 16000
    first_after: int = 32000
    min_samples: int = 16000
    min_speech_ratio: float = 0.35
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if not 0 < self.hop <= self.length:
            raise ValueError("hop must be in (0, length]")
        if not 0 < self.min_samples <= self.first_after <= self.length:
            raise ValueError("need 0 < min_samples <= first_after <= length")


@dataclass(frozen=True, slots=True)
class Window:
    stream_id: str
    index: int
    start: float
    end: float
    samples: npt.NDArray[np.float32]
    speech_ratio: float


class SlidingWindower:
    """Feeds on VAD-aligned 16 kHz PCM16 plus per-frame speech flags."""

    def __init__(self, stream_id: str, spec: WindowSpec, origin: float = 0.0) -> None:
        self.stream_id = stream_id
        self.spec = spec
        self.origin = origin
        self._audio: RingBuffer[np.int16] = RingBuffer(spec.length, np.int16)
        self._speech: RingBuffer[np.uint8] = RingBuffer(spec.length, np.uint8)
        self._next_end = spec.first_after
        self._last_end = 0
        self._index = 0
        self.skipped = 0

    @property
    def total_samples(self) -> int:
        return self._audio.total_written

    def push(self, pcm: npt.NDArray[np.int16], speech: npt.NDArray[np.bool_]) -> list[Window]:
        """Append frames; ``speech`` has one flag per ``len(pcm) // len(speech)`` samples."""
        per_sample = np.repeat(speech.astype(np.uint8), len(pcm) // max(len(speech), 1))
        if len(per_sample) != len(pcm):
            raise ValueError("speech flags do not cover the PCM evenly")
        windows: list[Window] = []
        offset = 0
        while offset < len(pcm):
            room = self._next_end - self._audio.total_written
            take = min(room, len(pcm) - offset)
            self._audio.write(pcm[offset:offset + take])
            self._speech.write(per_sample[offset:offset + take])
            offset += take
            if self._audio.total_written == self._next_end:
                window = self._cut()
                if window is not None:
                    windows.append(window)
                self._next_end += self.spec.hop
        return windows

    def flush(self) -> list[Window]:
        """Cut a last window over the tail that no window has covered yet."""
        total = self._audio.total_written
        tail = total - self._last_end
        if total < self.spec.min_samples or tail < self.spec.min_samples // 2:
            return []
        window = self._cut()
        return [window] if window is not None else []

    def _cut(self) -> Window | None:
        end = self._audio.total_written
        self._last_end = end
        speech = self._speech.latest(self.spec.length)
        ratio = float(speech.mean()) if len(speech) else 0.0
        if ratio < self.spec.min_speech_ratio:
            self.skipped += 1
            return None
        samples = pcm16_to_float(self._audio.latest(self.spec.length))
        rate = self.spec.sample_rate
        window = Window(
            stream_id=self.stream_id,
            index=self._index,
            start=self.origin + (end - len(samples)) / rate,
            end=self.origin + end / rate,
            samples=samples,
            speech_ratio=ratio,
        )
        self._index += 1
        return window
