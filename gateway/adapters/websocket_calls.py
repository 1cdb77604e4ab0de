"""Twilio Media Streams and Genesys AudioHook over Starlette WebSockets.

Each connection: a protocol object (sans-I/O), a ``CallBridge``, and a loop
that reads one message at a time with an idle timeout. Sends go through a
timeout too, so a peer that stops reading is dropped instead of stalling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
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
    playback_chunk_seconds = 0.5  # Twilio buffers outbound media; ``clear`` empties it

    def __init__(self, ws: WebSocket, conn: TwilioConnection, timeout: float) -> None:
        self._ws, self._conn, self._timeout = ws, conn, timeout

    async def send_audio(self, pcm: npt.NDArray[np.int16]) -> None:
        for message in self._conn.media_messages(pcm, samples_per_message=len(pcm)):
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

    playback_chunk_seconds = 0.02

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


class _Ended(Exception):
    """The peer went away or the call idled out; ``args[0]`` says which."""


async def _receive(ws: WebSocket, bridge: CallBridge, runtime: GatewayRuntime) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, bridge.idle_deadline(runtime.settings.idle_timeout_s))
    try:
        async with asyncio.timeout_at(deadline):  # a timer, not a task, per message
            message = await ws.receive()
    except TimeoutError:
        raise _Ended("idle timeout") from None
    if message["type"] == "websocket.disconnect":
        if message.get("code") == 1009:  # uvicorn enforces ws_max_size before we see it
            runtime.emit({"type": "protocol_error", "protocol": bridge.protocol,
                          "call_id": bridge.call_id, "message": "message too big",
                          "fatal": True})
            raise _Ended("message too big")
        raise _Ended("peer disconnected")
    return dict(message)


async def _refuse_when_draining(ws: WebSocket, runtime: GatewayRuntime) -> bool:
    if runtime.accepting:
        return False
    await ws.close(code=1013)  # "try again later": a peer retries on another node
    return True


async def _run_call(ws: WebSocket, runtime: GatewayRuntime, bridge: CallBridge,
                    handle: Callable[[dict[str, Any]], Awaitable[str | None]]) -> str:
    """Read messages until ``handle`` returns a reason to end, the call idles out or the
    peer goes; returns why the call ended. The caller finishes the bridge."""
    runtime.metrics.connections[bridge.protocol] += 1
    try:
        with runtime.track(bridge):
            while True:
                stop = await handle(await _receive(ws, bridge, runtime))
                if stop is not None:
                    return stop
    except _Ended as ended:
        return str(ended)
    except (WebSocketDisconnect, ConnectionError, TimeoutError) as exc:
        return f"connection lost: {exc.__class__.__name__}"


async def twilio_endpoint(ws: WebSocket) -> None:
    runtime: GatewayRuntime = ws.app.state.runtime
    if await _refuse_when_draining(ws, runtime):
        return
    await ws.accept()
    conn = TwilioConnection()
    control = TwilioControl(ws, conn, runtime.settings.send_timeout_s)
    bridge = CallBridge(runtime.guard, control, runtime.sink, runtime.prompts,
                        protocol="twilio", scored_legs=("caller",))

    async def handle(message: dict[str, Any]) -> str | None:
        text = message.get("text")
        if text is None:
            runtime.emit({"type": "protocol_error", "protocol": "twilio",
                          "call_id": bridge.call_id, "fatal": True,
                          "message": "binary frame on a JSON protocol"})
            return "protocol violation: binary frame"
        return dispatch(bridge, conn.receive_text(text))

    reason = "peer disconnected"
    try:
        reason = await _run_call(ws, runtime, bridge, handle)
    finally:
        await bridge.finish(reason)
        await _close(ws)


async def audiohook_endpoint(ws: WebSocket) -> None:
    runtime: GatewayRuntime = ws.app.state.runtime
    if await _refuse_when_draining(ws, runtime):
        return
    await ws.accept()
    # ``closed`` waits until the final verdicts have been sent as events.
    conn = AudioHookConnection(ws.headers.get("audiohook-session-id"), auto_closed=False)
    timeout = runtime.settings.send_timeout_s
    control = AudioHookControl(ws, conn, timeout)
    bridge = CallBridge(runtime.guard, control, runtime.sink, runtime.prompts,
                        protocol="audiohook")

    async def handle(message: dict[str, Any]) -> str | None:
        if message.get("bytes") is not None:
            events = conn.receive_bytes(message["bytes"])
        else:
            events = conn.receive_text(message.get("text") or "")
        stop = dispatch(bridge, events)
        await flush_audiohook(ws, conn, timeout)
        return stop

    reason = "peer disconnected"
    try:
        reason = await _run_call(ws, runtime, bridge, handle)
    finally:
        await bridge.finish(reason)
        if conn.send_closed() or reason == "idle timeout":
            if reason == "idle timeout":
                conn.disconnect("error", "no media received within the idle timeout")
            with contextlib.suppress(Exception):
                await flush_audiohook(ws, conn, timeout)
        await _close(ws)


async def _close(ws: WebSocket) -> None:
    try:
        await ws.close()
    except Exception:  # already closed by the peer
        return
