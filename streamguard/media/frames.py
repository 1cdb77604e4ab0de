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


VIDEO_FORMATS = ("rgb24", "yuv420p")


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """One decoded picture of a stream, placed on that stream's media clock.

    ``pts`` is in seconds from the stream's start (adapters rebase transport
    timestamps such as RTP's random origin). ``image`` is ``uint8``: an
    ``(height, width, 3)`` array for ``rgb24``, or the planar I420 layout PyAV
    uses for ``yuv420p``: ``(height * 3 // 2, width)``, the Y plane on top of
    the quarter-size U and V planes.
    """

    stream_id: str
    pts: float
    image: npt.NDArray[np.uint8]
    format: str = "rgb24"

    def __post_init__(self) -> None:
        if self.format not in VIDEO_FORMATS:
            raise MediaError(f"unsupported video format {self.format!r}")
        if self.image.dtype != np.uint8:
            raise MediaError("VideoFrame needs a uint8 image")
        if self.format == "rgb24":
            if self.image.ndim != 3 or self.image.shape[2] != 3:
                raise MediaError("rgb24 frames need a (height, width, 3) array")
        elif self.image.ndim != 2 or self.image.shape[0] % 3 or self.image.shape[1] % 2:
            raise MediaError("yuv420p frames need a (height * 3 // 2, width) array")
        if self.image.shape[0] == 0 or self.image.shape[1] == 0:
            raise MediaError("empty video frame")

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        rows = int(self.image.shape[0])
        return rows if self.format == "rgb24" else rows * 2 // 3
