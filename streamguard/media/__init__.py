"""Media types and codecs: what flows into the core and how it gets there."""

from streamguard.media.decode import DecodedAudio, decode_file
from streamguard.media.frames import AudioChunk
from streamguard.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from streamguard.media.pcm import float_to_pcm16, pcm16_from_bytes, pcm16_to_bytes, pcm16_to_float
from streamguard.media.resample import StreamResampler

__all__ = [
    "AudioChunk",
    "DecodedAudio",
    "StreamResampler",
    "alaw_decode",
    "alaw_encode",
    "decode_file",
    "float_to_pcm16",
    "pcm16_from_bytes",
    "pcm16_to_bytes",
    "pcm16_to_float",
    "ulaw_decode",
    "ulaw_encode",
]
