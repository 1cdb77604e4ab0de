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
    audio_frames: int = 0  # audio messages the gateway sent back
    audio_seconds: float = 0.0  # and how much audio they carried
    late_frames: int = 0
    frames_sent: int = 0
    started_at: float = 0.0  # event-loop time of the first media frame

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
    async with websockets.connect(url, max_size=2**20, compression=None) as ws:
        async def reader() -> None:
            async for raw in ws:
                message = json.loads(raw)
                result.messages.append(message)
                if message.get("event") == "media":
                    result.audio_frames += 1
                    result.audio_seconds += len(
                        base64.b64decode(message["media"]["payload"])) / 8000
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
        started = result.started_at = loop.time()
        for chunk, start in enumerate(range(0, len(pcm8k), FRAME)):
            seq += 1
            payload = base64.b64encode(ulaw_encode(pcm8k[start:start + FRAME])).decode()
            await ws.send(json.dumps({
                "event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid,
                "media": {"track": "inbound", "chunk": str(chunk + 1),
                          "timestamp": str(start // 8), "payload": payload}}))
            result.frames_sent += 1
            await _pace(chunk, started, speed, result)
        seq += 1
        await ws.send(json.dumps({"event": "stop", "sequenceNumber": str(seq),
                                  "streamSid": stream_sid,
                                  "stop": {"accountSid": "AC" + "0" * 32, "callSid": call_sid}}))
        await asyncio.sleep(linger)
        reading.cancel()
    return result


async def replay_audiohook(url: str, caller8k: npt.NDArray[np.int16],
                           agent8k: npt.NDArray[np.int16] | None = None, *, speed: float = 1.0,
                           custom_config: dict[str, str] | None = None,
                           close_timeout: float = 5.0) -> ReplayResult:
    """Genesys' side of AudioHook: open, stereo PCMU frames, close, wait for ``closed``.

    ``caller8k`` goes on the ``external`` channel, ``agent8k`` (silence when
    omitted) on ``internal``; 20 ms frames, interleaved as the platform does.
    """
    import websockets

    result = ReplayResult()
    session_id = str(uuid.uuid4())
    agent = agent8k if agent8k is not None else np.zeros_like(caller8k)
    length = max(len(caller8k), len(agent))
    caller = np.pad(caller8k, (0, length - len(caller8k)))
    agent = np.pad(agent, (0, length - len(agent)))
    seq = 0
    serverseq = 0
    position = 0

    def message(kind: str, parameters: dict[str, Any]) -> str:
        nonlocal seq
        seq += 1
        return json.dumps({"version": "2", "id": session_id, "type": kind, "seq": seq,
                           "serverseq": serverseq, "position": f"PT{position / 8000:.3f}S",
                           "parameters": parameters})

    async with websockets.connect(url, max_size=2**20,
                                  additional_headers={"Audiohook-Session-Id": session_id}) as ws:
        closed = asyncio.Event()
        opened = asyncio.Event()

        async def reader() -> None:
            nonlocal serverseq
            async for raw in ws:
                reply = json.loads(raw)
                result.messages.append(reply)
                serverseq = int(reply.get("seq", serverseq))
                if reply.get("type") == "opened":
                    opened.set()
                elif reply.get("type") == "closed":
                    closed.set()
                elif reply.get("type") == "ping":
                    await ws.send(message("pong", {}))

        reading = asyncio.create_task(reader())
        await ws.send(message("open", {
            "organizationId": str(uuid.uuid4()), "conversationId": str(uuid.uuid4()),
            "participant": {"id": str(uuid.uuid4()), "ani": "+15550100", "aniName": "Caller",
                            "dnis": "+15550199"},
            "media": [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"],
                       "rate": 8000}],
            "language": "en-US", "customConfig": custom_config or {}}))
        await asyncio.wait_for(opened.wait(), close_timeout)
        started = asyncio.get_running_loop().time()
        for index, start in enumerate(range(0, length, FRAME)):
            frame = np.empty(2 * len(caller[start:start + FRAME]), dtype=np.uint8)
            frame[0::2] = np.frombuffer(ulaw_encode(caller[start:start + FRAME]), np.uint8)
            frame[1::2] = np.frombuffer(ulaw_encode(agent[start:start + FRAME]), np.uint8)
            await ws.send(frame.tobytes())
            position += len(frame) // 2
            await _pace(index, started, speed, result)
        await ws.send(message("close", {"reason": "end"}))
        try:
            await asyncio.wait_for(closed.wait(), close_timeout)
        finally:
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
                    result.audio_seconds += length / 2 / 8000

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
