"""Protocol events -> bridge calls, shared by every adapter."""

from __future__ import annotations

import logging

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


def dispatch(bridge: CallBridge, events: list[object]) -> str | None:
    """Apply protocol events; return a reason when the connection should end."""
    for event in events:
        if isinstance(event, AudioReceived):
            if bridge.call_id is None:
                return "audio before call start"
            bridge.audio(event.leg, event.pcm, event.pts, event.sample_rate)
        elif isinstance(event, CallStarted):
            bridge.start(event.call_id, tuple(event.legs), event.parameters)
        elif isinstance(event, CallUpdated):
            bridge.parameters.update(event.parameters)
        elif isinstance(event, Paused):
            bridge.paused = True
        elif isinstance(event, Resumed):
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
