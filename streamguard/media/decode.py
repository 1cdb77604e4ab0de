"""Decode any audio PyAV can open into 16 kHz mono PCM16.

Files come from operators (``streamguard scan``) and are untrusted: every
failure becomes a :class:`MediaError` that names the file and the reason, and
hostile sizes are bounded by ``max_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from streamguard.errors import MediaError

# Longest input decoded in one go: 4 h of 16 kHz PCM16 is ~460 MB; beyond that
# a caller should stream it instead of scanning it as a file.
MAX_DECODE_SECONDS = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    pcm: npt.NDArray[np.int16]
    sample_rate: int
    source_rate: int
    source_codec: str
    source_channels: int

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


def decode_file(path: str | Path, sample_rate: int = 16000,
                max_seconds: float = MAX_DECODE_SECONDS) -> DecodedAudio:
    """First audio stream of ``path``, downmixed and resampled with PyAV."""
    name = str(path)
    try:
        container = av.open(name)
    except FileNotFoundError as exc:
        raise MediaError(f"{name}: no such file") from exc
    except IsADirectoryError as exc:
        raise MediaError(f"{name}: is a directory") from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{name}: not a readable media file ({exc})") from exc
    with container:
        if not container.streams.audio:
            raise MediaError(f"{name}: has no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        source_rate = int(stream.codec_context.sample_rate or 0)
        channels = int(stream.codec_context.channels or 0)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        max_samples = int(max_seconds * sample_rate)
        parts: list[npt.NDArray[np.int16]] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
                    total += out.samples
                if total > max_samples:
                    raise MediaError(f"{name}: longer than {max_seconds:.0f} s; stream it instead")
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        except av.FFmpegError as exc:
            if not parts:
                raise MediaError(f"{name}: audio could not be decoded ({exc})") from exc
            # A truncated file still yields what decoded before the damage.
    if not parts or sum(len(p) for p in parts) == 0:
        raise MediaError(f"{name}: contains no audio samples")
    pcm = np.concatenate(parts)
    return DecodedAudio(pcm, sample_rate, source_rate, codec, channels)
