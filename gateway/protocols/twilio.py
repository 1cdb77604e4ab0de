"""Twilio Media Streams as a sans-I/O state machine.

Twilio opens a WebSocket to us and sends JSON text messages: ``connected``
(once), ``start`` (once, with ``streamSid``, ``callSid``, ``tracks``,
``customParameters`` and ``mediaFormat``), then ``media`` (base64 μ-law, 8 kHz
mono, per track, with a millisecond ``timestamp``), ``dtmf``, ``mark`` echoes,
and finally ``stop``. On a bidirectional stream (``<Connect><Stream>``) we may
send ``media``, ``mark`` and ``clear`` back, each addressed by ``streamSid``.

This class only turns text into events and events into text; the WebSocket,
timeouts and the session bridge live in ``gateway.adapters``.

States: ``AWAITING_START`` → ``STREAMING`` → ``STOPPED``, or ``ERRORED`` after
a fatal violation. ``connected`` is accepted but not required before
``start`` (test harnesses and some Twilio-compatible platforms omit it).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.protocols.events import (
    AGENT,
    CALLER,
    TELEPHONY_RATE,
    AudioReceived,
    CallEnded,
    CallStarted,
    DtmfReceived,
    Event,
    LocalProtocolError,
    MarkAcknowledged,
    ProtocolViolation,
)
from streamguard.media import ulaw_decode, ulaw_encode

#: Largest text message we parse. A 20 ms ``media`` message is ~300
#: characters and a ``start`` with custom parameters a few kilobytes; 64 KiB
#: is far above anything Twilio sends yet bounds the JSON parser's work and
#: memory per message, so a hostile peer cannot make us parse megabytes.
MAX_MESSAGE_CHARS = 64 * 1024

#: Non-fatal violations tolerated per connection before we give up. One bad
#: message is worth logging and skipping; an endless stream of them means the
#: peer is broken or hostile and the call cannot be judged anyway.
MAX_NONFATAL_VIOLATIONS = 100

#: Samples per outgoing ``media`` message: 20 ms at 8 kHz, the packetisation
#: Twilio itself uses, so our audio is paced like theirs.
FRAME_SAMPLES = 160

#: ``start.tracks`` / ``media.track`` names → our leg names. ``inbound`` is
#: what Twilio receives from the caller; ``outbound`` what it plays to them.
TRACK_LEGS = {"inbound": CALLER, "outbound": AGENT}

_MS_TO_SAMPLES = TELEPHONY_RATE // 1000
_DTMF_DIGITS = frozenset("0123456789*#ABCD")


class TwilioState(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"
    ERRORED = "errored"


class TwilioConnection:
    """One Twilio Media Stream (one WebSocket).

    ``receive_text`` never raises: malformed input becomes a
    ``ProtocolViolation`` event. The send helpers return the JSON text to
    write; they raise ``LocalProtocolError`` only if called before ``start``,
    because until then there is no ``streamSid`` to address.
    """

    def __init__(self) -> None:
        self.state = TwilioState.AWAITING_START
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.account_sid: str | None = None
        self.legs: tuple[str, ...] = ()
        self.violations = 0
        self._last_seq: int | None = None

    # ------------------------------------------------------------------ receive

    def receive_text(self, text: str) -> list[Event]:
        """Parse one WebSocket text message into events."""
        if self.state in (TwilioState.ERRORED, TwilioState.STOPPED):
            return []
        if len(text) > MAX_MESSAGE_CHARS:
            return [self._fatal(f"message of {len(text)} characters exceeds "
                                f"{MAX_MESSAGE_CHARS}")]
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            # RecursionError: deeply nested arrays; ValueError covers bad JSON,
            # bad UTF-8 and integers too long to convert.
            return [self._violation("message is not valid JSON")]
        if not isinstance(message, dict):
            return [self._violation("message is not a JSON object")]
        event = message.get("event")
        if not isinstance(event, str):
            return [self._violation("message has no 'event' string")]

        events: list[Event] = []
        self._check_sequence(message, event, events)
        if self._failed():  # the checks above hit the violation cap
            return events
        handler = _HANDLERS.get(event)
        if handler is None:
            events.append(self._violation(f"unknown event type {event[:40]!r}"))
            return events
        events.extend(handler(self, message))
        return events

    def _on_connected(self, message: dict[str, Any]) -> list[Event]:
        if self.state is not TwilioState.AWAITING_START:
            return [self._violation("'connected' after 'start'")]
        return []

    def _on_start(self, message: dict[str, Any]) -> list[Event]:
        if self.state is not TwilioState.AWAITING_START:
            return [self._fatal("second 'start' on one stream")]
        start = message.get("start")
        if not isinstance(start, dict):
            return [self._fatal("'start' message without a 'start' object")]
        stream_sid = start.get("streamSid", message.get("streamSid"))
        if not isinstance(stream_sid, str) or not stream_sid:
            return [self._fatal("'start' without a streamSid")]
        call_sid = start.get("callSid")
        account_sid = start.get("accountSid")

        fmt = start.get("mediaFormat", {})
        if not isinstance(fmt, dict):
            return [self._fatal("'mediaFormat' is not an object")]
        encoding = fmt.get("encoding", "audio/x-mulaw")
        rate = fmt.get("sampleRate", TELEPHONY_RATE)
        channels = fmt.get("channels", 1)
        if encoding != "audio/x-mulaw" or rate != TELEPHONY_RATE or channels != 1:
            return [self._fatal(f"unsupported mediaFormat {encoding!r}/{rate!r}/{channels!r}: "
                                "need audio/x-mulaw, 8000 Hz, 1 channel")]

        events: list[Event] = []
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list):
            events.append(self._violation("'tracks' is not a list; assuming inbound"))
            tracks = ["inbound"]
        legs: list[str] = []
        for track in tracks:
            leg = TRACK_LEGS.get(track) if isinstance(track, str) else None
            if leg is None:
                events.append(self._violation(f"unknown track {str(track)[:40]!r}"))
            elif leg not in legs:
                legs.append(leg)
        if not legs:
            legs.append(CALLER)

        custom = start.get("customParameters", {})
        if not isinstance(custom, dict):
            events.append(self._violation("'customParameters' is not an object"))
            custom = {}
        if self._failed():  # the violations above hit the cap
            return events

        self.stream_sid = stream_sid
        self.call_sid = call_sid if isinstance(call_sid, str) and call_sid else None
        self.account_sid = account_sid if isinstance(account_sid, str) else None
        self.legs = tuple(legs)
        self.state = TwilioState.STREAMING
        events.append(CallStarted(
            call_id=self.call_sid or stream_sid,
            legs=self.legs,
            sample_rate=TELEPHONY_RATE,
            encoding="PCMU",
            parameters={str(k): _as_text(v) for k, v in custom.items()},
        ))
        return events

    def _on_media(self, message: dict[str, Any]) -> list[Event]:
        if self.state is not TwilioState.STREAMING:
            return [self._fatal("'media' before 'start'")]
        media = message.get("media")
        if not isinstance(media, dict):
            return [self._violation("'media' message without a 'media' object")]
        track = media.get("track", "inbound")
        leg = TRACK_LEGS.get(track) if isinstance(track, str) else None
        if leg is None:
            return [self._violation(f"media for unknown track {str(track)[:40]!r}")]
        payload = media.get("payload")
        if not isinstance(payload, str):
            return [self._violation("media without a base64 'payload' string")]
        try:
            ulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return [self._violation("media payload is not valid base64")]
        if not ulaw:
            return []
        pts = _parse_uint(media.get("timestamp"))
        return [AudioReceived(
            leg=leg,
            pcm=ulaw_decode(ulaw),
            pts=None if pts is None else pts * _MS_TO_SAMPLES,
            sample_rate=TELEPHONY_RATE,
        )]

    def _on_dtmf(self, message: dict[str, Any]) -> list[Event]:
        dtmf = message.get("dtmf")
        digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
        if not isinstance(digit, str) or digit.upper() not in _DTMF_DIGITS:
            return [self._violation("'dtmf' without a valid digit")]
        return [DtmfReceived(digit.upper())]

    def _on_mark(self, message: dict[str, Any]) -> list[Event]:
        mark = message.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str):
            return [self._violation("'mark' without a name")]
        return [MarkAcknowledged(name)]

    def _on_stop(self, message: dict[str, Any]) -> list[Event]:
        self.state = TwilioState.STOPPED
        return [CallEnded("stop")]

    def _check_sequence(self, message: dict[str, Any], event: str,
                        events: list[Event]) -> None:
        """Twilio numbers every message after ``connected`` 1, 2, 3 …

        Over one TCP connection nothing is lost or reordered, so a gap means a
        buggy peer; we say so but keep the message (the audio is still good).
        """
        sid = message.get("streamSid")
        if self.stream_sid is not None and sid is not None and sid != self.stream_sid:
            events.append(self._violation("streamSid does not match 'start'"))
        if event == "connected" or "sequenceNumber" not in message:
            return
        seq = _parse_uint(message.get("sequenceNumber"))
        if seq is None:
            events.append(self._violation("sequenceNumber is not a non-negative integer"))
            return
        if self._last_seq is not None and seq != self._last_seq + 1:
            events.append(self._violation(f"sequenceNumber {seq} after {self._last_seq}"))
        self._last_seq = seq

    # --------------------------------------------------------------------- send

    def media_messages(self, pcm8k: npt.NDArray[np.int16],
                       samples_per_message: int = FRAME_SAMPLES) -> list[str]:
        """``media`` messages carrying ``pcm8k`` (mono int16, 8 kHz), 20 ms each
        unless ``samples_per_message`` asks for longer ones.

        Twilio queues what we send and plays it in order (``clear`` empties the
        queue); a ``mark`` after the last one tells us when it has been heard.
        """
        sid = self._require_sid()
        pcm = _check_pcm(pcm8k)
        step = max(1, samples_per_message)
        out: list[str] = []
        for begin in range(0, len(pcm), step):
            payload = base64.b64encode(ulaw_encode(pcm[begin:begin + step]))
            out.append(_dumps({"event": "media", "streamSid": sid,
                               "media": {"payload": payload.decode("ascii")}}))
        return out

    def mark_message(self, name: str) -> str:
        """A ``mark``: Twilio echoes it once the audio queued before it played."""
        return _dumps({"event": "mark", "streamSid": self._require_sid(),
                       "mark": {"name": name}})

    def clear_message(self) -> str:
        """A ``clear``: drop audio Twilio has queued but not played yet."""
        return _dumps({"event": "clear", "streamSid": self._require_sid()})

    # ------------------------------------------------------------------ helpers

    def _require_sid(self) -> str:
        if self.stream_sid is None:
            raise LocalProtocolError("no streamSid yet: Twilio has not sent 'start'")
        return self.stream_sid

    def _failed(self) -> bool:
        return self.state is TwilioState.ERRORED

    def _violation(self, message: str) -> ProtocolViolation:
        self.violations += 1
        if self.violations > MAX_NONFATAL_VIOLATIONS:
            return self._fatal(f"more than {MAX_NONFATAL_VIOLATIONS} protocol violations; "
                               f"last: {message}")
        return ProtocolViolation(message, fatal=False)

    def _fatal(self, message: str) -> ProtocolViolation:
        self.state = TwilioState.ERRORED
        return ProtocolViolation(message, fatal=True)


_HANDLERS: dict[str, Callable[[TwilioConnection, dict[str, Any]], list[Event]]] = {
    "connected": TwilioConnection._on_connected,
    "start": TwilioConnection._on_start,
    "media": TwilioConnection._on_media,
    "dtmf": TwilioConnection._on_dtmf,
    "mark": TwilioConnection._on_mark,
    "stop": TwilioConnection._on_stop,
}


def _parse_uint(value: object) -> int | None:
    """Twilio sends counters and timestamps as decimal strings ("42")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and 0 < len(value) <= 18 and value.isascii() and value.isdigit():
        return int(value)
    return None


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def _check_pcm(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError("expected a 1-D int16 array of 8 kHz samples")
    return pcm


__all__ = [
    "FRAME_SAMPLES",
    "MAX_MESSAGE_CHARS",
    "MAX_NONFATAL_VIOLATIONS",
    "TRACK_LEGS",
    "TwilioConnection",
    "TwilioState",
]
