"""Conversions between PCM16 bytes, int16 arrays and float32 samples."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamguard.errors import MediaError


def pcm16_from_bytes(payload: bytes, byteorder: str = "little") -> npt.NDArray[np.int16]:
    """Decode signed 16-bit PCM; an odd byte count is a framing error, not audio."""
    if len(payload) % 2:
        raise MediaError(f"PCM16 payload has an odd length ({len(payload)} bytes)")
    dtype = "<i2" if byteorder == "little" else ">i2"
    return np.frombuffer(payload, dtype=dtype).astype(np.int16)


def pcm16_to_bytes(pcm: npt.NDArray[np.int16], byteorder: str = "little") -> bytes:
    dtype = "<i2" if byteorder == "little" else ">i2"
    return pcm.astype(dtype).tobytes()


def pcm16_to_float(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """int16 / 32768, the scaling soundfile and the AASIST recipe use."""
    return pcm.astype(np.float32) / np.float32(32768.0)


def float_to_pcm16(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    scaled = np.round(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)
