"""Typed audio frames that carry their own time base.

Every chunk knows which stream it belongs to and where it sits on that
stream's media clock, so windows and verdicts can name the exact seconds of
the call they judge, whatever the transport's packet size.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from streamguard.errors import MediaError
from streamguard.media.g711 import alaw_decode, ulaw_decode
from streamguard.media.pcm import pcm16_from_bytes

PCM16 = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono signed 16-bit PCM with its position on the stream's media clock.

    ``pts`` counts samples at ``sample_rate`` (time base ``1/sample_rate``),
    like PyAV audio frames; ``None`` means "directly after the previous chunk".
    """

    stream_id: str
    pcm: PCM16
    sample_rate: int
    pts: int | None = None

    def __post_init__(self) -> None:
        if self.pcm.dtype != np.int16 or self.pcm.ndim != 1:
            raise MediaError("AudioChunk needs a 1-D int16 array (mono PCM16)")
        if not 4000 <= self.sample_rate <= 192000:
            raise MediaError(f"unsupported sample rate {self.sample_rate} Hz")

    @property
    def time_base(self) -> Fraction:
        return Fraction(1, self.sample_rate)

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate

    @classmethod
    def from_ulaw(cls, stream_id: str, payload: bytes, sample_rate: int = 8000,
                  pts: int | None = None) -> AudioChunk:
        """G.711 μ-law, as Twilio and most SIP trunks carry it."""
        return cls(stream_id, ulaw_decode(payload), sample_rate, pts)

    @classmethod
    def from_alaw(cls, stream_id: str, payload: bytes, sample_rate: int = 8000,
                  pts: int | None = None) -> AudioChunk:
        """G.711 A-law, the European trunk default."""
        return cls(stream_id, alaw_decode(payload), sample_rate, pts)

    @classmethod
    def from_pcm16(cls, stream_id: str, payload: bytes, sample_rate: int,
                   pts: int | None = None, byteorder: str = "little") -> AudioChunk:
        """Raw signed 16-bit PCM (AudioSocket uses little-endian slin16)."""
        return cls(stream_id, pcm16_from_bytes(payload, byteorder), sample_rate, pts)
