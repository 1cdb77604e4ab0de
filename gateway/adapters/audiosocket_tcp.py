"""Asterisk AudioSocket over TCP: a few dozen lines around the sans-I/O class."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.adapters.dispatch import dispatch
from gateway.bridge import CallBridge
from gateway.protocols.audiosocket import AudioSocketConnection
from gateway.runtime import GatewayRuntime

log = logging.getLogger("streamguard.gateway")
READ_SIZE = 4096


class AudioSocketControl:
    playback_chunk_seconds = 0.02  # Asterisk plays slin frames as they arrive

    def __init__(self, writer: asyncio.StreamWriter, conn: AudioSocketConnection,
                 timeout: float) -> None:
        self._writer, self._conn, self._timeout = writer, conn, timeout

    async def send_audio(self, pcm: npt.NDArray[np.int16]) -> None:
        self._writer.write(self._conn.audio_frames(pcm))
        await asyncio.wait_for(self._writer.drain(), self._timeout)

    async def stop_audio(self) -> None:
        return None  # audio stops when we stop sending frames

    async def report(self, record: dict[str, Any]) -> None:
        return None  # AudioSocket has no message for verdicts; the sinks carry them


def audiosocket_handler(runtime: GatewayRuntime) -> Any:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = AudioSocketConnection()
        control = AudioSocketControl(writer, conn, runtime.settings.send_timeout_s)
        bridge = CallBridge(runtime.guard, control, runtime.sink, runtime.prompts,
                            protocol="audiosocket", scored_legs=("caller",))
        runtime.metrics.connections["audiosocket"] += 1
        reason = "peer disconnected"
        try:
            with runtime.track(bridge):
                while True:
                    idle = max(0.0, bridge.idle_deadline(runtime.settings.idle_timeout_s))
                    try:
                        data = await asyncio.wait_for(reader.read(READ_SIZE), idle)
                    except TimeoutError:
                        reason = "idle timeout"
                        break
                    if not data:
                        break
                    stop = dispatch(bridge, conn.receive_data(data))
                    if stop is not None:
                        reason = stop
                        break
        except (ConnectionError, TimeoutError) as exc:
            reason = f"connection lost: {exc.__class__.__name__}"
        finally:
            await bridge.finish(reason)
            if not reason.startswith(("ended:", "connection lost", "peer disconnected")):
                with contextlib.suppress(ConnectionError, TimeoutError):
                    writer.write(conn.hangup_frame())  # tell Asterisk why audio stops
                    await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    return handle
