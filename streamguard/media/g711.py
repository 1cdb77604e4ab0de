"""G.711 μ-law and A-law codecs (ITU-T G.711), table driven.

Decoding is a 256-entry lookup; encoding uses a 65 536-entry table built once,
so a 20 ms telephony frame costs a single numpy gather either way.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_ULAW_BIAS = 0x84


def _ulaw_byte_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return -magnitude if sign else magnitude


def _alaw_byte_to_linear(byte: int) -> int:
    byte ^= 0x55
    sign = byte & 0x80
    exponent = (byte >> 4) & 0x07
    mantissa = byte & 0x0F
    step = (mantissa << 4) + 8
    magnitude = step if exponent == 0 else (step + 0x100) << (exponent - 1)
    return magnitude if sign else -magnitude


def _linear_to_ulaw(sample: int) -> int:
    # 14-bit magnitude with the bias added, then segment (exponent) search.
    value = sample >> 2
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + (_ULAW_BIAS >> 2)
    segment = max(0, (value >> 6).bit_length())
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _linear_to_alaw(sample: int) -> int:
    sign = 0x80 if sample >= 0 else 0
    magnitude = min(abs(sample) if sample >= 0 else -sample - 1, 32767) >> 3
    if magnitude < 32:
        code = magnitude >> 1
    else:
        exponent = magnitude.bit_length() - 5
        code = (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    return (sign | code) ^ 0x55


_ULAW_DECODE = np.array([_ulaw_byte_to_linear(b) for b in range(256)], dtype=np.int16)
_ALAW_DECODE = np.array([_alaw_byte_to_linear(b) for b in range(256)], dtype=np.int16)
_ULAW_ENCODE = np.array([_linear_to_ulaw(s) for s in range(-32768, 32768)], dtype=np.uint8)
_ALAW_ENCODE = np.array([_linear_to_alaw(s) for s in range(-32768, 32768)], dtype=np.uint8)


def ulaw_decode(payload: bytes) -> npt.NDArray[np.int16]:
    return _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode(payload: bytes) -> npt.NDArray[np.int16]:
    return _ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    return bytes(_ULAW_ENCODE[pcm.astype(np.int32) + 32768].tobytes())


def alaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    return bytes(_ALAW_ENCODE[pcm.astype(np.int32) + 32768].tobytes())
