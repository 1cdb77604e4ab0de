"""Twilio Media Streams and Genesys AudioHook over Starlette WebSockets.

Each connection: a protocol object (sans-I/O), a ``CallBridge``, and a loop
that reads one message at a time with an idle timeout. Sends go through a
timeout too, so a peer that stops reading is dropped instead of stalling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.adapters.dispatch import dispatch
from gateway.bridge import CallBridge
from gateway.protocols.audiohook import AudioHookConnection
from gateway.protocols.twilio import TwilioConnection
from gateway.runtime import GatewayRuntime

log = logging.getLogger("streamguard.gateway")


class TwilioControl:
    def __init__(self, ws: WebSocket, conn: TwilioConnection, timeout: float) -> None:
        self._ws, self._conn, self._timeout = ws, conn, timeout

    async def send_audio(self, pcm: npt.NDArray[np.int16]) -> None:
        for message in self._conn.media_messages(pcm):
            await asyncio.wait_for(self._ws.send_text(message), self._timeout)

    async def stop_audio(self) -> None:
        await asyncio.wait_for(self._ws.send_text(self._conn.clear_message()), self._timeout)

    async def report(self, record: dict[str, Any]) -> None:
        if record.get("type") == "action":
            name = f"streamguard:{record['kind']}"
            await asyncio.wait_for(self._ws.send_text(self._conn.mark_message(name)),
                                   self._timeout)


class AudioHookControl:
    """AudioHook is listen-only: no audio goes back; verdicts go out as ``event`` messages."""

    def __init__(self, ws: WebSocket, conn: AudioHookConnection, timeout: float) -> None:
        self._ws, self._conn, self._timeout = ws, conn, timeout

    async def send_audio(self, pcm: npt.NDArray[np.int16]) -> None:
        return None

    async def stop_audio(self) -> None:
        return None

    async def report(self, record: dict[str, Any]) -> None:
        entity = {"type": "streamguard", "data": record}
        self._conn.send_event([entity])
        await flush_audiohook(self._ws, self._conn, self._timeout)


async def flush_audiohook(ws: WebSocket, conn: AudioHookConnection, timeout: float) -> None:
    for message in conn.data_to_send():
        await asyncio.wait_for(ws.send_text(message), timeout)


async def _receive(ws: WebSocket, runtime: GatewayRuntime) -> dict[str, Any] | None:
    try:
        message = await asyncio.wait_for(ws.receive(), runtime.settings.idle_timeout_s)
    except TimeoutError:
        return None
    if message["type"] == "websocket.disconnect":
        return None
    return dict(message)


async def twilio_endpoint(ws: WebSocket) -> None:
    runtime: GatewayRuntime = ws.app.state.runtime
    await ws.accept()
    conn = TwilioConnection()
    control = TwilioControl(ws, conn, runtime.settings.send_timeout_s)
    bridge = CallBridge(runtime.guard, control, runtime.sink, runtime.prompts,
                        protocol="twilio", scored_legs=("caller",))
    reason = "peer disconnected"
    runtime.metrics.connections["twilio"] += 1
    try:
        with runtime.track(bridge):
            while True:
                message = await _receive(ws, runtime)
                if message is None:
                    break
                text = message.get("text")
                if text is None:
                    runtime.metrics.protocol_errors["twilio"] += 1
                    reason = "binary frame on a JSON protocol"
                    break
                stop = dispatch(bridge, conn.receive_text(text))
                if stop is not None:
                    reason = stop
                    break
    except (WebSocketDisconnect, ConnectionError, TimeoutError) as exc:
        reason = f"connection lost: {exc.__class__.__name__}"
    finally:
        await bridge.finish(reason)
        await _close(ws)


async def audiohook_endpoint(ws: WebSocket) -> None:
    runtime: GatewayRuntime = ws.app.state.runtime
    await ws.accept()
    conn = AudioHookConnection()
    timeout = runtime.settings.send_timeout_s
    control = AudioHookControl(ws, conn, timeout)
    bridge = CallBridge(runtime.guard, control, runtime.sink, runtime.prompts,
                        protocol="audiohook")
    reason = "peer disconnected"
    runtime.metrics.connections["audiohook"] += 1
    try:
        with runtime.track(bridge):
            while True:
                message = await _receive(ws, runtime)
                if message is None:
                    break
                if message.get("bytes") is not None:
                    events = conn.receive_bytes(message["bytes"])
                else:
                    events = conn.receive_text(message.get("text") or "")
                stop = dispatch(bridge, events)
                await flush_audiohook(ws, conn, timeout)
                if stop is not None:
                    reason = stop
                    break
    except (WebSocketDisconnect, ConnectionError, TimeoutError) as exc:
        reason = f"connection lost: {exc.__class__.__name__}"
    finally:
        await bridge.finish(reason)
        await _close(ws)


async def _close(ws: WebSocket) -> None:
    try:
        await ws.close()
    except Exception:  # already closed by the peer
        return
