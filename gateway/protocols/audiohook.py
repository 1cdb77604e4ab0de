"""Genesys Cloud AudioHook (protocol version 2), server side, sans-I/O.

Genesys (the *client*) opens a WebSocket to us (the *server*). Text frames
are JSON messages in one envelope::

    {"version": "2", "id": <session uuid>, "type": ..., "seq": n,
     "serverseq": m, "position": "PT1.23S", "parameters": {...}}   client → server
    {"version": "2", "id": <session uuid>, "type": ..., "seq": n,
     "clientseq": m, "parameters": {...}}                          server → client

Each side numbers its own messages 1, 2, 3 … in ``seq`` and echoes the last
``seq`` it received from the other side (``serverseq`` / ``clientseq``).
``position`` is the client's audio position: it advances with audio sent and
with audio announced as ``discarded``, not while paused.

Transactions (client → server, our reply):
``open`` → ``opened`` (with the media format we chose from those offered),
``ping`` → ``pong``, ``close`` → ``closed``. The client also reports
``paused`` / ``resumed`` (no reply owed), ``update`` (e.g. language),
``discarded`` and ``error``. We may send ``pause`` / ``resume`` requests,
``event`` messages (entities, e.g. our verdicts), and ``disconnect`` (reason
``completed``, ``unauthorized`` or ``error``), after which the client closes.

Binary frames carry audio in the negotiated format; with two channels the
samples are interleaved in the order of the negotiated ``channels`` list
(``["external", "internal"]``: customer byte, agent byte, customer byte …).
Audio may only flow after ``opened``.

Violations (bad JSON, a malformed envelope, a wrong ``seq``, a ``serverseq``
we never sent, a foreign session id, unknown message types, audio before
``opened``, oversize frames) end the session: as the reference server does,
we answer them with ``disconnect`` / ``reason: "error"`` and stop reading.
The protocol has no server → client ``error`` message; ``error`` flows only
from client to server.

Replies are queued; the transport drains them with ``data_to_send()`` after
every ``receive_*`` call (h11's outbox pattern).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.protocols.events import (
    AGENT,
    CALLER,
    TELEPHONY_RATE,
    AudioReceived,
    CallEnded,
    CallStarted,
    CallUpdated,
    Event,
    Paused,
    ProtocolViolation,
    Resumed,
)
from streamguard.media import ulaw_decode

#: Largest text message we parse; the reference server rejects anything over
#: 64 KiB, and nothing the client legitimately sends comes close.
MAX_TEXT_CHARS = 65_535

#: Largest binary audio frame. Genesys sends a frame every ~100–200 ms
#: (1.6–3.2 KB stereo PCMU); 64 KiB is 4 s of stereo audio, well beyond any
#: real frame while keeping one frame's decode cost bounded.
MAX_AUDIO_FRAME_BYTES = 64 * 1024

#: Non-fatal violations tolerated before the session is ended. Only a few
#: things are non-fatal here (audio while paused, a repeated ``open``,
#: client-reported errors), so a flood of them is a broken client.
MAX_NONFATAL_VIOLATIONS = 100

#: Longest ``info`` we put in a ``disconnect``: enough to debug, small enough
#: that echoing hostile input back cannot bloat our replies.
MAX_INFO_CHARS = 256

#: Positions beyond this are rejected as garbage (about 115 days of audio),
#: which also keeps the sample arithmetic far from float/overflow edge cases.
MAX_POSITION_SECONDS = 10_000_000

NULL_UUID = "00000000-0000-0000-0000-000000000000"

#: AudioHook channel names → our leg names.
CHANNEL_LEGS = {"external": CALLER, "internal": AGENT}

DISCONNECT_REASONS = frozenset({"completed", "unauthorized", "error"})

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DURATION_RE = re.compile(r"^PT(\d*\.)?\d+S$")


class AudioHookState(enum.Enum):
    AWAITING_OPEN = "awaiting_open"
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSING = "closing"  # client sent ``close``; we owe ``closed`` (auto_closed=False)
    CLOSED = "closed"
    ERRORED = "errored"


class AudioHookConnection:
    """One AudioHook session (one WebSocket), server side.

    ``session_id`` is the ``Audiohook-Session-Id`` request header when the
    transport has it; otherwise the first message's ``id`` is adopted. Every
    later message must carry the same id.

    With ``auto_closed=True`` (the default) ``closed`` is queued as soon as
    ``close`` arrives. Pass ``False`` to finish work first (e.g. report the
    final verdict with ``send_event``) and then call ``send_closed()``; the
    client waits a few seconds for ``closed``.
    """

    def __init__(self, session_id: str | None = None, *, auto_closed: bool = True) -> None:
        self.state = AudioHookState.AWAITING_OPEN
        self.session_id = session_id.lower() if session_id else None
        self.auto_closed = auto_closed
        self.clientseq = 0  # last seq received from the client
        self.serverseq = 0  # last seq we sent
        self.position = 0  # samples per channel received (plus discarded)
        self.client_position: int | None = None  # last position the client reported
        self.conversation_id: str | None = None
        self.is_probe = False
        self.media: dict[str, Any] | None = None
        self.channels: tuple[str, ...] = ()
        self.legs: tuple[str, ...] = ()
        self.violations = 0
        self.disconnect_sent = False
        self._outbox: list[str] = []

    # ------------------------------------------------------------------ receive

    def receive_text(self, text: str) -> list[Event]:
        """Handle one text frame; replies it triggers go to the outbox."""
        if self.state in (AudioHookState.CLOSED, AudioHookState.ERRORED):
            return []
        if len(text) > MAX_TEXT_CHARS:
            return [self._fatal(f"text message of {len(text)} characters exceeds "
                                f"{MAX_TEXT_CHARS}")]
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            return [self._fatal("text message is not valid JSON")]
        problem = _envelope_problem(message)
        if problem is not None:
            return [self._fatal(f"not a well-formed client message: {problem}")]
        assert isinstance(message, dict)  # checked by _envelope_problem

        seq: int = message["seq"]
        if seq != self.clientseq + 1:
            return [self._fatal(f"seq {seq} does not follow {self.clientseq}")]
        self.clientseq = seq
        if message["serverseq"] > self.serverseq:
            return [self._fatal(f"serverseq {message['serverseq']} is ahead of the last "
                                f"seq we sent ({self.serverseq})")]
        msg_id = message["id"].lower()
        if self.session_id is None:
            self.session_id = msg_id
        elif msg_id != self.session_id:
            return [self._fatal("session id does not match this session")]
        self.client_position = _duration_samples(message["position"])

        kind: str = message["type"]
        handler = _HANDLERS.get(kind)
        if handler is None:
            return [self._fatal(f"{kind[:40]!r} is not a supported client message")]
        return handler(self, message["parameters"])

    def receive_bytes(self, data: bytes) -> list[Event]:
        """Handle one binary frame of audio in the negotiated format."""
        state = self.state
        if state in (AudioHookState.CLOSED, AudioHookState.ERRORED, AudioHookState.CLOSING):
            return []  # the client promised no audio after ``close``; ignore stragglers
        if state is AudioHookState.AWAITING_OPEN:
            return [self._fatal("audio received before 'opened'")]
        if len(data) > MAX_AUDIO_FRAME_BYTES:
            return [self._fatal(f"audio frame of {len(data)} bytes exceeds "
                                f"{MAX_AUDIO_FRAME_BYTES}")]
        if state is AudioHookState.PAUSED:
            return [self._violation("audio received while paused; dropped")]
        count = len(self.channels)
        if count == 0 or len(data) % count:
            return [self._fatal(f"audio frame of {len(data)} bytes is not a whole number of "
                                f"{count}-channel samples")]
        if not data:
            return []
        pts = self.position
        self.position += len(data) // count
        raw = bytes(data)
        return [AudioReceived(leg=CHANNEL_LEGS[channel], pcm=ulaw_decode(raw[i::count]),
                              pts=pts, sample_rate=TELEPHONY_RATE)
                for i, channel in enumerate(self.channels)]

    # ---------------------------------------------------------- client messages

    def _on_open(self, params: dict[str, Any]) -> list[Event]:
        if self.state is not AudioHookState.AWAITING_OPEN:
            return [self._violation(f"'open' in state {self.state.value}; ignored")]
        conversation_id = params.get("conversationId")
        if not _is_uuid(conversation_id):
            return [self._fatal("'open' without a valid conversationId")]
        offered = params.get("media")
        if not isinstance(offered, list):
            return [self._fatal("'open' without a media list")]
        chosen = _choose_media(offered)
        if chosen is None:
            return [self._fatal("none of the offered media is supported "
                                "(need PCMU, 8000 Hz, external and/or internal channel)")]
        assert isinstance(conversation_id, str)

        self.conversation_id = conversation_id.lower()
        self.is_probe = self.conversation_id == NULL_UUID
        self.media = chosen
        self.channels = tuple(chosen["channels"])
        self.legs = tuple(CHANNEL_LEGS[c] for c in self.channels)
        opened: dict[str, Any] = {"media": [chosen], "startPaused": False}
        if params.get("supportedLanguages") is True:
            opened["supportedLanguages"] = []  # we transcribe nothing
        self._send("opened", opened)
        self.state = AudioHookState.ACTIVE
        if self.is_probe:
            # Genesys probes a new integration with a null conversation id and
            # closes right away: answer the handshake, start no analysis.
            return []
        return [CallStarted(call_id=self.conversation_id, legs=self.legs,
                            sample_rate=TELEPHONY_RATE, encoding="PCMU",
                            parameters=_open_parameters(params))]

    def _on_ping(self, params: dict[str, Any]) -> list[Event]:
        self._send("pong", {})
        return []

    def _on_paused(self, params: dict[str, Any]) -> list[Event]:
        if self.state is AudioHookState.ACTIVE:
            self.state = AudioHookState.PAUSED
            return [Paused()]
        if self.state is AudioHookState.PAUSED:
            return []  # "still paused", the client's answer to a resume it overrides
        return [self._violation(f"'paused' in state {self.state.value}; ignored")]

    def _on_resumed(self, params: dict[str, Any]) -> list[Event]:
        if self.state is AudioHookState.PAUSED:
            self.state = AudioHookState.ACTIVE
            return [Resumed()]
        if self.state is AudioHookState.ACTIVE:
            return []  # acknowledges a resume while already streaming
        return [self._violation(f"'resumed' in state {self.state.value}; ignored")]

    def _on_discarded(self, params: dict[str, Any]) -> list[Event]:
        # The client dropped audio (e.g. it fell behind); position includes it,
        # so move ours past the gap to keep pts aligned with the client's clock.
        start = _duration_samples(params.get("start"))
        discarded = _duration_samples(params.get("discarded"))
        if start is None or discarded is None:
            return [self._fatal("'discarded' needs start and discarded durations")]
        self.position = max(self.position, start + discarded)
        return []

    def _on_update(self, params: dict[str, Any]) -> list[Event]:
        if self.state not in (AudioHookState.ACTIVE, AudioHookState.PAUSED):
            return [self._violation(f"'update' in state {self.state.value}; ignored")]
        return [CallUpdated({str(k): _as_text(v) for k, v in params.items()})]

    def _on_error(self, params: dict[str, Any]) -> list[Event]:
        code = params.get("code")
        text = params.get("message")
        return [self._violation(f"client reported error {code!r}: {str(text)[:MAX_INFO_CHARS]}")]

    def _on_close(self, params: dict[str, Any]) -> list[Event]:
        if self.state is AudioHookState.CLOSING:
            return []
        reason = params.get("reason")
        if not isinstance(reason, str):
            reason = "end"
        self.state = AudioHookState.CLOSING
        if self.auto_closed:
            self.send_closed()
        return [CallEnded(reason[:MAX_INFO_CHARS])]

    # ------------------------------------------------------------ server → client

    def data_to_send(self) -> list[str]:
        """Take the queued outgoing text messages, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    def send_event(self, entities: list[dict[str, Any]]) -> bool:
        """Queue an ``event`` message (each entity ``{"type": str, "data": …}``).

        Returns False and sends nothing when the session is not open (before
        ``opened`` or after ``closed``), where the protocol has no room for
        events; callers reporting verdicts late need not check the state.
        """
        if not isinstance(entities, list) or not all(
                isinstance(e, dict) and isinstance(e.get("type"), str) and "data" in e
                for e in entities):
            raise ValueError("entities must be a list of {'type': str, 'data': ...} objects")
        if self.state not in (AudioHookState.ACTIVE, AudioHookState.PAUSED,
                              AudioHookState.CLOSING):
            return False
        self._send("event", {"entities": entities})
        return True

    def disconnect(self, reason: str = "completed", info: str | None = None) -> bool:
        """Queue a ``disconnect``; the client answers with ``close``.

        ``reason`` is ``completed``, ``unauthorized`` or ``error``. Returns
        False when the session is already closing or closed.
        """
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"disconnect reason must be one of {sorted(DISCONNECT_REASONS)}")
        if self.state in (AudioHookState.CLOSING, AudioHookState.CLOSED,
                          AudioHookState.ERRORED):
            return False
        params: dict[str, Any] = {"reason": reason}
        if info:
            params["info"] = info[:MAX_INFO_CHARS]
        self._send("disconnect", params)
        self.disconnect_sent = True
        return True

    def pause(self) -> bool:
        """Ask the client to stop streaming (it confirms with ``paused``)."""
        return self._request("pause")

    def resume(self) -> bool:
        """Ask the client to stream again (it confirms with ``resumed``)."""
        return self._request("resume")

    def send_closed(self) -> bool:
        """Complete the close transaction (only needed with ``auto_closed=False``)."""
        if self.state is not AudioHookState.CLOSING:
            return False
        self._send("closed", {})
        self.state = AudioHookState.CLOSED
        return True

    # ------------------------------------------------------------------ helpers

    def _request(self, kind: str) -> bool:
        if self.state not in (AudioHookState.ACTIVE, AudioHookState.PAUSED):
            return False
        self._send(kind, {})
        return True

    def _send(self, kind: str, parameters: dict[str, Any]) -> None:
        self.serverseq += 1
        self._outbox.append(json.dumps({
            "version": "2", "type": kind, "seq": self.serverseq,
            "clientseq": self.clientseq, "id": self.session_id or NULL_UUID,
            "parameters": parameters,
        }, separators=(",", ":")))

    def _violation(self, message: str) -> ProtocolViolation:
        self.violations += 1
        if self.violations > MAX_NONFATAL_VIOLATIONS:
            return self._fatal(f"more than {MAX_NONFATAL_VIOLATIONS} protocol violations; "
                               f"last: {message}")
        return ProtocolViolation(message, fatal=False)

    def _fatal(self, message: str) -> ProtocolViolation:
        if self.state not in (AudioHookState.CLOSED, AudioHookState.ERRORED):
            self._send("disconnect", {"reason": "error",
                                      "info": f"Client error: {message}"[:MAX_INFO_CHARS]})
            self.disconnect_sent = True
        self.state = AudioHookState.ERRORED
        return ProtocolViolation(message, fatal=True)


_HANDLERS: dict[str, Callable[[AudioHookConnection, dict[str, Any]], list[Event]]] = {
    "open": AudioHookConnection._on_open,
    "close": AudioHookConnection._on_close,
    "ping": AudioHookConnection._on_ping,
    "paused": AudioHookConnection._on_paused,
    "resumed": AudioHookConnection._on_resumed,
    "update": AudioHookConnection._on_update,
    "discarded": AudioHookConnection._on_discarded,
    "error": AudioHookConnection._on_error,
}

# ---------------------------------------------------------------- validation


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_uuid(value: object) -> bool:
    return isinstance(value, str) and _UUID_RE.match(value) is not None


def _duration_samples(value: object) -> int | None:
    """``"PT1.25S"`` → 10 000 samples at 8 kHz; None if not a valid duration."""
    if not isinstance(value, str) or len(value) > 40 or not _DURATION_RE.match(value):
        return None
    try:
        seconds = Decimal(value[2:-1])
    except InvalidOperation:
        return None
    if seconds > MAX_POSITION_SECONDS:
        return None
    return int(seconds * TELEPHONY_RATE)


def _envelope_problem(message: object) -> str | None:
    """What is wrong with a client message's envelope, or None."""
    if not isinstance(message, dict):
        return "not a JSON object"
    if message.get("version") != "2":
        return "version is not '2'"
    if not _is_uuid(message.get("id")):
        return "id is not a UUID"
    if not isinstance(message.get("type"), str):
        return "type is not a string"
    if not _is_uint(message.get("seq")):
        return "seq is not a non-negative integer"
    if not _is_uint(message.get("serverseq")):
        return "serverseq is not a non-negative integer"
    if _duration_samples(message.get("position")) is None:
        return "position is not a duration like 'PT1.5S'"
    if not isinstance(message.get("parameters"), dict):
        return "parameters is not an object"
    return None


def _choose_media(offered: list[Any]) -> dict[str, Any] | None:
    """Pick PCMU 8 kHz, both channels if offered, else one channel.

    Both channels let us judge the customer and the agent; a single one is
    still worth having. The client lists its preferences first, so within a
    kind we keep its order.
    """
    stereo: dict[str, Any] | None = None
    mono: dict[str, Any] | None = None
    for media in offered:
        if not isinstance(media, dict):
            continue
        if (media.get("type") != "audio" or media.get("format") != "PCMU"
                or media.get("rate") != TELEPHONY_RATE):
            continue
        channels = media.get("channels")
        if not isinstance(channels, list) or not all(c in CHANNEL_LEGS for c in channels):
            continue
        if len(channels) == 2 and channels[0] != channels[1] and stereo is None:
            stereo = media
        elif len(channels) == 1 and mono is None:
            mono = media
    chosen = stereo or mono
    if chosen is None:
        return None
    return {"type": "audio", "format": "PCMU", "channels": list(chosen["channels"]),
            "rate": TELEPHONY_RATE}


def _open_parameters(params: dict[str, Any]) -> dict[str, str]:
    """Flatten what ``open`` tells us about the call into string parameters."""
    out: dict[str, str] = {}
    custom = params.get("customConfig")
    if isinstance(custom, dict):
        out.update({str(k): _as_text(v) for k, v in custom.items()})
    participant = params.get("participant")
    if isinstance(participant, dict):
        for key, name in (("id", "participantId"), ("ani", "ani"), ("aniName", "aniName"),
                          ("dnis", "dnis")):
            if isinstance(participant.get(key), str):
                out[name] = participant[key]
    for key in ("organizationId", "conversationId", "language"):
        if isinstance(params.get(key), str):
            out[key] = params[key]
    return out


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


__all__ = [
    "CHANNEL_LEGS",
    "MAX_AUDIO_FRAME_BYTES",
    "MAX_NONFATAL_VIOLATIONS",
    "MAX_TEXT_CHARS",
    "AudioHookConnection",
    "AudioHookState",
]
