"""Asterisk AudioSocket as a sans-I/O state machine.

AudioSocket is a TCP byte stream of type-length-value frames: a 3-byte header
(one byte kind, a 16-bit big-endian payload length) and the payload.

    0x00  hang-up (no payload)          0x01  call UUID, 16 raw bytes
    0x03  DTMF digit, 1 ASCII byte      0x10  slin16: signed 16-bit LE, 8 kHz mono
    0x11–0x18  slin16 at 12/16/24/32/44.1/48/96/192 kHz (newer Asterisk)
    0xff  error; optional payload of bit-packed Asterisk codes
          (0x01 caller hung up, 0x02 frame forwarding error, 0x04 memory error)

Asterisk sends the UUID frame first, then audio (and DTMF) until hang-up; it
plays whatever audio frames we send back. TCP delivers bytes, not frames, so
``receive_data`` keeps the tail of an incomplete frame until the rest arrives.

States: ``AWAITING_UUID`` → ``STREAMING`` → ``CLOSED``, or ``ERRORED``.
"""

from __future__ import annotations

import enum
import struct
import uuid
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from gateway.protocols.events import (
    CALLER,
    TELEPHONY_RATE,
    AudioReceived,
    CallEnded,
    CallStarted,
    DtmfReceived,
    Event,
    ProtocolViolation,
)
from streamguard.errors import MediaError
from streamguard.media import pcm16_from_bytes, pcm16_to_bytes

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_SLIN = 0x10
KIND_ERROR = 0xFF

#: slin16 frame kinds → sample rate. 0x10 is the original 8 kHz kind; the
#: others were added to Asterisk's AudioSocket in 2025.
SLIN_RATES = {
    0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000,
    0x15: 44100, 0x16: 48000, 0x17: 96000, 0x18: 192000,
}

#: Asterisk's bit-packed error codes (payload of a 0xff frame).
ERROR_BITS = {0x01: "hangup of calling party", 0x02: "frame forwarding error",
              0x04: "memory (allocation) error"}

HEADER = struct.Struct(">BH")

#: Largest payload we accept. Asterisk sends one frame per codec packet,
#: usually 20 ms: 320 bytes at 8 kHz, 7 680 bytes at 192 kHz. 16 KiB leaves
#: room for 40 ms packets at the highest rate, yet a desynchronised or hostile
#: stream cannot make us wait for (and buffer) the 64 KiB the header allows.
MAX_PAYLOAD_BYTES = 16 * 1024

#: Most bytes ever held between calls: one incomplete frame. Anything complete
#: is parsed immediately, so the buffer only ever holds a partial frame.
MAX_BUFFERED_BYTES = HEADER.size + MAX_PAYLOAD_BYTES

#: Non-fatal violations tolerated before we call the stream hopeless (see the
#: Twilio module: one odd frame is noise, a flood is a broken peer).
MAX_NONFATAL_VIOLATIONS = 100

#: Payload bytes per outgoing audio frame: 20 ms of 8 kHz slin16, the
#: packetisation Asterisk itself uses for slin.
FRAME_BYTES = 320

_DTMF_DIGITS = frozenset(b"0123456789*#ABCD")


class AudioSocketState(enum.Enum):
    AWAITING_UUID = "awaiting_uuid"
    STREAMING = "streaming"
    CLOSED = "closed"
    ERRORED = "errored"


class AudioSocketConnection:
    """One AudioSocket TCP connection, server side (Asterisk is the client).

    ``accepted_rates`` lists the slin sample rates handed on as audio. Only
    8 kHz by default: consumers that assume telephony audio would
    misinterpret 16 kHz samples as 8 kHz ones, so higher rates must be opted
    into; frames at other rates are dropped with one non-fatal violation per
    frame kind (and counted in ``dropped_frames``).
    """

    def __init__(self, accepted_rates: frozenset[int] = frozenset({TELEPHONY_RATE})) -> None:
        self.state = AudioSocketState.AWAITING_UUID
        self.call_id: str | None = None
        self.accepted_rates = accepted_rates
        self.violations = 0
        self.dropped_frames = 0
        self._buffer = bytearray()
        self._elapsed = Fraction(0)  # seconds of audio received, exact at any rate
        self._reported_kinds: set[int] = set()

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame held back (never above MAX_BUFFERED_BYTES)."""
        return len(self._buffer)

    # ------------------------------------------------------------------ receive

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the socket; returns the events of every frame
        they complete. Never raises."""
        if self.state in (AudioSocketState.CLOSED, AudioSocketState.ERRORED):
            return []
        buf = self._buffer
        buf += data
        events: list[Event] = []
        offset = 0
        view = memoryview(buf)
        try:
            while len(buf) - offset >= HEADER.size:
                kind, length = HEADER.unpack_from(buf, offset)
                if length > MAX_PAYLOAD_BYTES:
                    events.append(self._fatal(
                        f"frame kind 0x{kind:02x} announces {length} payload bytes "
                        f"(limit {MAX_PAYLOAD_BYTES})"))
                    break
                end = offset + HEADER.size + length
                if end > len(buf):
                    break  # wait for the rest of this frame
                payload = bytes(view[offset + HEADER.size:end])
                offset = end
                self._on_frame(kind, payload, events)
                if self.state in (AudioSocketState.CLOSED, AudioSocketState.ERRORED):
                    break
        finally:
            view.release()
        if self.state in (AudioSocketState.CLOSED, AudioSocketState.ERRORED):
            buf.clear()
        else:
            del buf[:offset]
        return events

    def _on_frame(self, kind: int, payload: bytes, events: list[Event]) -> None:
        if self.state is AudioSocketState.AWAITING_UUID:
            if kind == KIND_UUID:
                self._on_uuid(payload, events)
            elif kind == KIND_HANGUP:
                self.state = AudioSocketState.CLOSED
                events.append(CallEnded("hangup before call id"))
            else:
                events.append(self._fatal(
                    f"first frame must be the call UUID (0x01), got kind 0x{kind:02x}"))
            return

        if kind in SLIN_RATES:
            self._on_audio(kind, payload, events)
        elif kind == KIND_DTMF:
            if len(payload) == 1 and payload[0] in _DTMF_DIGITS:
                events.append(DtmfReceived(chr(payload[0])))
            else:
                events.append(self._violation(f"DTMF frame with payload {payload[:8]!r}"))
        elif kind == KIND_HANGUP:
            self.state = AudioSocketState.CLOSED
            events.append(CallEnded("hangup"))
        elif kind == KIND_ERROR:
            self._on_error(payload, events)
        elif kind == KIND_UUID:
            events.append(self._violation("second UUID frame on one connection"))
        else:
            events.append(self._violation(f"unknown frame kind 0x{kind:02x}"))

    def _on_uuid(self, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 16:
            events.append(self._fatal(f"UUID frame of {len(payload)} bytes, expected 16"))
            return
        self.call_id = str(uuid.UUID(bytes=payload))
        self.state = AudioSocketState.STREAMING
        events.append(CallStarted(call_id=self.call_id, legs=(CALLER,),
                                  sample_rate=TELEPHONY_RATE, encoding="L16", parameters={}))

    def _on_audio(self, kind: int, payload: bytes, events: list[Event]) -> None:
        rate = SLIN_RATES[kind]
        try:
            pcm = pcm16_from_bytes(payload, "little")
        except MediaError as exc:
            events.append(self._violation(str(exc)))
            return
        pts = int(self._elapsed * rate)
        self._elapsed += Fraction(len(pcm), rate)
        if rate not in self.accepted_rates:
            self.dropped_frames += 1
            if kind not in self._reported_kinds:
                self._reported_kinds.add(kind)
                events.append(self._violation(
                    f"slin audio at {rate} Hz (kind 0x{kind:02x}) is not accepted; dropping it"))
            return
        if len(pcm):
            events.append(AudioReceived(leg=CALLER, pcm=pcm, pts=pts, sample_rate=rate))

    def _on_error(self, payload: bytes, events: list[Event]) -> None:
        code = payload[0] if payload else 0
        causes = [text for bit, text in ERROR_BITS.items() if code & bit]
        detail = ", ".join(causes) or "unspecified"
        if code & 0x01:
            # The caller is gone; Asterisk closes the socket next.
            self.state = AudioSocketState.CLOSED
            events.append(CallEnded(f"error 0x{code:02x}: {detail}"))
        else:
            events.append(self._violation(f"peer reported error 0x{code:02x}: {detail}"))

    # --------------------------------------------------------------------- send

    def audio_frames(self, pcm8k: npt.NDArray[np.int16]) -> bytes:
        """Frames (kind 0x10) that play ``pcm8k`` (mono int16, 8 kHz) to the
        caller, 20 ms each; the last one may be shorter."""
        if not isinstance(pcm8k, np.ndarray) or pcm8k.dtype != np.int16 or pcm8k.ndim != 1:
            raise ValueError("expected a 1-D int16 array of 8 kHz samples")
        raw = pcm16_to_bytes(pcm8k, "little")
        out = bytearray()
        for begin in range(0, len(raw), FRAME_BYTES):
            chunk = raw[begin:begin + FRAME_BYTES]
            out += HEADER.pack(KIND_SLIN, len(chunk))
            out += chunk
        return bytes(out)

    def hangup_frame(self) -> bytes:
        """The 3-byte hang-up frame: Asterisk ends the AudioSocket leg."""
        return HEADER.pack(KIND_HANGUP, 0)

    # ------------------------------------------------------------------ helpers

    def _violation(self, message: str) -> ProtocolViolation:
        self.violations += 1
        if self.violations > MAX_NONFATAL_VIOLATIONS:
            return self._fatal(f"more than {MAX_NONFATAL_VIOLATIONS} protocol violations; "
                               f"last: {message}")
        return ProtocolViolation(message, fatal=False)

    def _fatal(self, message: str) -> ProtocolViolation:
        self.state = AudioSocketState.ERRORED
        return ProtocolViolation(message, fatal=True)


__all__ = [
    "FRAME_BYTES",
    "MAX_BUFFERED_BYTES",
    "MAX_NONFATAL_VIOLATIONS",
    "MAX_PAYLOAD_BYTES",
    "SLIN_RATES",
    "AudioSocketConnection",
    "AudioSocketState",
]
