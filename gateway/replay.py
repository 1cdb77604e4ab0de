"""Clients that replay audio to a gateway over each telephony protocol.

They speak the wire formats byte for byte, as the platforms do, pacing 20 ms
frames in real time (``speed`` > 1 runs faster). The demo, the tests and
``bench/calls.py`` use them as the far end of a call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamguard.media import pcm16_to_bytes, ulaw_encode

FRAME = 160  # 20 ms at 8 kHz


@dataclass
class ReplayResult:
    """What the far end received back from the gateway."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    audio_frames: int = 0
    late_frames: int = 0

    def of_event(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("event") == name or m.get("type") == name]


async def _pace(index: int, started: float, speed: float, result: ReplayResult) -> None:
    loop = asyncio.get_running_loop()
    due = started + (index + 1) * 0.02 / speed
    delay = due - loop.time()
    if delay < -0.02:
        result.late_frames += 1
    await asyncio.sleep(max(0.0, delay))


async def replay_twilio(url: str, pcm8k: npt.NDArray[np.int16], *, speed: float = 1.0,
                        parameters: dict[str, str] | None = None,
                        on_message: Callable[[dict[str, Any]], None] | None = None,
                        linger: float = 0.2) -> ReplayResult:
    """A Twilio ``<Stream>``: connected, start, media…, stop."""
    import websockets

    result = ReplayResult()
    stream_sid = "MZ" + uuid.uuid4().hex
    call_sid = "CA" + uuid.uuid4().hex
    async with websockets.connect(url, max_size=2**20) as ws:
        async def reader() -> None:
            async for raw in ws:
                message = json.loads(raw)
                result.messages.append(message)
                if message.get("event") == "media":
                    result.audio_frames += 1
                if on_message is not None:
                    on_message(message)

        reading = asyncio.create_task(reader())
        seq = 1
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        seq += 1
        await ws.send(json.dumps({
            "event": "start", "sequenceNumber": str(seq), "streamSid": stream_sid,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": stream_sid,
                      "callSid": call_sid, "tracks": ["inbound"],
                      "customParameters": parameters or {},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}}}))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for chunk, start in enumerate(range(0, len(pcm8k), FRAME)):
            seq += 1
            payload = base64.b64encode(ulaw_encode(pcm8k[start:start + FRAME])).decode()
            await ws.send(json.dumps({
                "event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid,
                "media": {"track": "inbound", "chunk": str(chunk + 1),
                          "timestamp": str(start // 8), "payload": payload}}))
            await _pace(chunk, started, speed, result)
        seq += 1
        await ws.send(json.dumps({"event": "stop", "sequenceNumber": str(seq),
                                  "streamSid": stream_sid,
                                  "stop": {"accountSid": "AC" + "0" * 32, "callSid": call_sid}}))
        await asyncio.sleep(linger)
        reading.cancel()
    return result


async def replay_audiosocket(host: str, port: int, pcm8k: npt.NDArray[np.int16], *,
                             speed: float = 1.0, call_id: uuid.UUID | None = None,
                             linger: float = 0.2) -> ReplayResult:
    """Asterisk's side of AudioSocket: UUID frame, slin16 frames, hang-up."""
    result = ReplayResult()
    reader, writer = await asyncio.open_connection(host, port)

    async def read_back() -> None:
        buffer = b""
        while True:
            data = await reader.read(4096)
            if not data:
                return
            buffer += data
            while len(buffer) >= 3:
                kind, length = struct.unpack(">BH", buffer[:3])
                if len(buffer) < 3 + length:
                    break
                buffer = buffer[3 + length:]
                result.messages.append({"event": f"kind-{kind:#04x}", "length": length})
                if kind == 0x10:
                    result.audio_frames += 1

    reading = asyncio.create_task(read_back())
    writer.write(struct.pack(">BH", 0x01, 16) + (call_id or uuid.uuid4()).bytes)
    started = asyncio.get_running_loop().time()
    for index, start in enumerate(range(0, len(pcm8k), FRAME)):
        payload = pcm16_to_bytes(pcm8k[start:start + FRAME])
        writer.write(struct.pack(">BH", 0x10, len(payload)) + payload)
        await writer.drain()
        await _pace(index, started, speed, result)
    writer.write(struct.pack(">BH", 0x00, 0))
    await writer.drain()
    await asyncio.sleep(linger)
    reading.cancel()
    writer.close()
    return result
