"""Protocol-neutral events produced by the telephony protocol state machines.

Twilio Media Streams, Genesys AudioHook and Asterisk AudioSocket say the same
few things in three wire formats: a call started, here is audio for a leg, a
key was pressed, the stream paused or resumed, the call ended. Each protocol
class translates its wire format into these events so the gateway's single
session bridge handles all three the same way (see ``gateway.adapters``).

The events are frozen dataclasses: plain data, no behaviour, safe to hand
across tasks. ``AudioReceived`` compares by identity because it carries a
numpy array, whose ``==`` is elementwise and would make ``event == other``
ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

#: The calling party (the customer): Twilio track ``inbound``, AudioHook
#: channel ``external``, the only leg of an AudioSocket connection.
CALLER = "caller"
#: The called party (the agent): Twilio track ``outbound``, AudioHook channel
#: ``internal``.
AGENT = "agent"

#: Every call on these three protocols is narrow-band telephony audio.
TELEPHONY_RATE = 8000


class LocalProtocolError(RuntimeError):
    """We were asked to produce a message the protocol does not allow now.

    Raised only by the *sending* methods (for example building a Twilio
    ``media`` message before ``start`` told us the stream's ``streamSid``).
    It is a bug in the caller, not in the peer, which is why it is an
    exception while bad input from the peer becomes a ``ProtocolViolation``
    event: ``receive_*`` methods never raise.
    """


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The peer announced a call and the format of its audio.

    ``parameters`` carries what the platform lets the operator attach to a
    stream (Twilio ``customParameters``; AudioHook participant fields and
    ``customConfig``; nothing for AudioSocket), flattened to strings so that
    policy code never has to know which protocol it came from.
    """

    call_id: str
    legs: tuple[str, ...]
    sample_rate: int = TELEPHONY_RATE
    encoding: str = "PCMU"
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class AudioReceived:
    """Decoded audio for one leg.

    ``pcm`` is mono int16 at ``sample_rate`` (8 kHz on every path unless an
    AudioSocket peer was allowed to send a higher rate). ``pts`` is the
    position of the first sample in samples at ``sample_rate`` from the start
    of the stream, taken from the protocol when it has timestamps, else
    counted from the audio received; ``None`` when the peer gave none we could
    trust.
    """

    leg: str
    pcm: npt.NDArray[np.int16]
    pts: int | None = None
    sample_rate: int = TELEPHONY_RATE


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A DTMF key press (``0``–``9``, ``*``, ``#``, ``A``–``D``)."""

    digit: str


@dataclass(frozen=True, slots=True)
class MarkAcknowledged:
    """Twilio played all audio queued before the mark of that name (or a
    ``clear`` dropped it): the point where a spoken warning is known to have
    been heard."""

    name: str


@dataclass(frozen=True, slots=True)
class Paused:
    """The platform stopped sending audio (AudioHook ``paused``), e.g. a
    secure pause while card details are read out. Not a call end."""


@dataclass(frozen=True, slots=True)
class Resumed:
    """Audio flows again after ``Paused``."""


@dataclass(frozen=True, slots=True)
class CallUpdated:
    """Mid-call metadata change (AudioHook ``update``, e.g. a new language)."""

    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The peer ended the stream; no more audio will come."""

    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer sent something the protocol does not allow.

    Reported instead of raised so one malformed message from a live call can
    be logged and counted without unwinding the adapter. ``fatal`` means the
    connection is unusable (framing lost, state machine broken, a hard limit
    exceeded): the protocol object has moved to its errored state, ignores
    further input, and the adapter should close the transport. Non-fatal ones
    were skipped and the call goes on.
    """

    message: str
    fatal: bool = False


Event = (
    CallStarted
    | AudioReceived
    | DtmfReceived
    | MarkAcknowledged
    | Paused
    | Resumed
    | CallUpdated
    | CallEnded
    | ProtocolViolation
)

__all__ = [
    "AGENT",
    "CALLER",
    "TELEPHONY_RATE",
    "AudioReceived",
    "CallEnded",
    "CallStarted",
    "CallUpdated",
    "DtmfReceived",
    "Event",
    "LocalProtocolError",
    "MarkAcknowledged",
    "Paused",
    "ProtocolViolation",
    "Resumed",
]
