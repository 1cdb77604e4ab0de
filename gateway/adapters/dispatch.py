"""Protocol events -> bridge calls, shared by every adapter."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.bridge import CallBridge
from gateway.protocols.events import (
    AudioReceived,
    CallEnded,
    CallStarted,
    CallUpdated,
    Paused,
    ProtocolViolation,
    Resumed,
)

log = logging.getLogger("streamguard.gateway")


def dispatch(bridge: CallBridge, events: Sequence[object]) -> str | None:
    """Apply protocol events; return a reason when the connection should end.

    Media, call start and pause changes count as progress; while a call is
    paused (AudioHook) any well-formed message does, since no audio is due.
    """
    if events and bridge.paused:
        bridge.touch()
    for event in events:
        if isinstance(event, AudioReceived):
            if bridge.call_id is None:
                return "audio before call start"
            bridge.touch()
            bridge.audio(event.leg, event.pcm, event.pts, event.sample_rate)
        elif isinstance(event, CallStarted):
            bridge.touch()
            bridge.start(event.call_id, tuple(event.legs), event.parameters)
        elif isinstance(event, CallUpdated):
            bridge.update(event.parameters)
        elif isinstance(event, Paused):
            bridge.touch()
            bridge.paused = True
        elif isinstance(event, Resumed):
            bridge.touch()
            bridge.paused = False
        elif isinstance(event, CallEnded):
            return f"ended: {event.reason}"
        elif isinstance(event, ProtocolViolation):
            log.warning("%s protocol violation on call %s: %s", bridge.protocol,
                        bridge.call_id, event.message)
            bridge.sink.emit({"type": "protocol_error", "protocol": bridge.protocol,
                              "call_id": bridge.call_id, "message": event.message,
                              "fatal": event.fatal})
            if event.fatal:
                return f"protocol violation: {event.message}"
    return None
