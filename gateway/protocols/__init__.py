"""Telephony wire protocols as sans-I/O state machines.

One class per protocol turns what the peer sent (text, bytes) into the typed,
protocol-neutral events of ``gateway.protocols.events`` and builds the
messages we send back; none of them touches a socket, a clock or an event
loop. The asyncio transports around them are in ``gateway.adapters``.

- ``TwilioConnection``: Twilio Media Streams (WebSocket, JSON + base64 μ-law)
- ``AudioHookConnection``: Genesys Cloud AudioHook v2, server side (WebSocket,
  JSON control + binary PCMU)
- ``AudioSocketConnection``: Asterisk AudioSocket (TCP, type-length-value
  frames of slin16)
"""

from gateway.protocols.audiohook import AudioHookConnection, AudioHookState
from gateway.protocols.audiosocket import AudioSocketConnection, AudioSocketState
from gateway.protocols.events import (
    AGENT,
    CALLER,
    AudioReceived,
    CallEnded,
    CallStarted,
    CallUpdated,
    DtmfReceived,
    Event,
    LocalProtocolError,
    MarkAcknowledged,
    Paused,
    ProtocolViolation,
    Resumed,
)
from gateway.protocols.twilio import TwilioConnection, TwilioState

__all__ = [
    "AGENT",
    "CALLER",
    "AudioHookConnection",
    "AudioHookState",
    "AudioReceived",
    "AudioSocketConnection",
    "AudioSocketState",
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
    "TwilioConnection",
    "TwilioState",
]
