"""Hostile input for the three protocol state machines.

A seeded random loop (reproducible, no extra dependency): valid sessions
mutated byte by byte, random JSON shaped like each protocol's messages,
random binary. Whatever arrives, ``receive_*`` must not raise, must return
only protocol events, must stay silent after a fatal violation, and must not
hold more than its stated limits. A few thousand cases in a few seconds.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from gateway.protocols.audiohook import (
    MAX_AUDIO_FRAME_BYTES,
    MAX_INFO_CHARS,
    MAX_TEXT_CHARS,
    AudioHookConnection,
)
from gateway.protocols.audiosocket import MAX_BUFFERED_BYTES, AudioSocketConnection
from gateway.protocols.events import (
    AudioReceived,
    CallEnded,
    CallStarted,
    CallUpdated,
    DtmfReceived,
    MarkAcknowledged,
    Paused,
    ProtocolViolation,
    Resumed,
)
from gateway.protocols.twilio import MAX_MESSAGE_CHARS, TwilioConnection

EVENT_TYPES = (AudioReceived, CallEnded, CallStarted, CallUpdated, DtmfReceived,
               MarkAcknowledged, Paused, ProtocolViolation, Resumed)
SEED = 0x5EED_CA11

# ------------------------------------------------------------------ generators


def random_scalar(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, -1, 1, 2**63, 2**70, 1.5, -0.0, float("nan"), "", "x",
        "PT1.5S", "PT-1S", "external", "internal", "inbound", "outbound", "PCMU", "L16",
        8000, "8000", "audio", str(uuid.UUID(int=rng.getrandbits(128))),
        "00000000-0000-0000-0000-000000000000", "\u0000\ud800", "🎧" * 3,
        "".join(rng.choices(string.printable, k=rng.randint(0, 20))),
    ])


def random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return random_scalar(rng)
    if roll < 0.75:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["type", "media", "channels", "rate", "format", "start", "payload",
                        "track", "name", "digit", "reason", "code", "message", "id",
                        "conversationId", "participant", "customParameters", "tracks",
                        "mediaFormat", "discarded", "language", "k"]): random_json(rng, depth + 1)
            for _ in range(rng.randint(0, 5))}


def mutate_text(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        if not text:
            text = rng.choice(["{", "}", "[", '"', "x"])
        op = rng.randrange(6)
        i = rng.randrange(len(text))
        if op == 0:  # replace a character
            text = text[:i] + rng.choice('{}[]":,0123456789-. aZ\\\u00e9\u2028') + text[i + 1:]
        elif op == 1:  # delete a span
            text = text[:i] + text[i + rng.randint(1, 8):]
        elif op == 2:  # insert junk
            text = text[:i] + "".join(rng.choices(string.printable, k=rng.randint(1, 6))) \
                + text[i:]
        elif op == 3:  # duplicate a span
            text = text[:i] + text[i:i + rng.randint(1, 30)] * 2 + text[i + 30:]
        elif op == 4:  # truncate
            text = text[:i]
        else:  # replace a digit run with something extreme
            text = text.replace("1", rng.choice(["-1", "1e400", "99999999999999999999",
                                                 "null", '"1"', "1.0"]), 1)
    return text


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += bytes([rng.randrange(256)])
        op = rng.randrange(4)
        i = rng.randrange(len(buf))
        if op == 0:
            buf[i] = rng.randrange(256)
        elif op == 1:
            del buf[i:i + rng.randint(1, 8)]
        elif op == 2:
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        else:
            buf[i:i] = rng.choice([b"\xff\xff", b"\x10\xff\xff", b"\x01\x00\x10", b"\x00\x00\x00"])
    return bytes(buf)


# ------------------------------------------------------------------ invariants


class Checker:
    """Wraps one connection; checks every answer it gives."""

    def __init__(self, receive: Callable[[Any], list[Any]]) -> None:
        self.receive = receive
        self.dead = False
        self.started = 0

    def __call__(self, data: Any) -> list[Any]:
        events = self.receive(data)
        assert isinstance(events, list)
        if self.dead:
            assert events == [], "input accepted after a fatal violation"
        for i, event in enumerate(events):
            assert isinstance(event, EVENT_TYPES), event
            if isinstance(event, AudioReceived):
                assert event.pcm.dtype == np.int16 and event.pcm.ndim == 1
                assert event.pts is None or event.pts >= 0
            if isinstance(event, CallStarted):
                self.started += 1
                assert self.started == 1, "two calls started on one connection"
                assert all(isinstance(v, str) for v in event.parameters.values())
            if isinstance(event, ProtocolViolation) and event.fatal:
                assert i == len(events) - 1, "events after a fatal violation"
                self.dead = True
        return events


# -------------------------------------------------------------------- Twilio

SID = "MZ00000000000000000000000000000000"


def twilio_script(rng: random.Random) -> list[str]:
    messages = [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
                json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": SID,
                            "start": {"streamSid": SID, "callSid": "CA1", "accountSid": "AC1",
                                      "tracks": ["inbound", "outbound"],
                                      "customParameters": {"tenant": "t"},
                                      "mediaFormat": {"encoding": "audio/x-mulaw",
                                                      "sampleRate": 8000, "channels": 1}}})]
    for seq in range(2, rng.randint(3, 9)):
        payload = base64.b64encode(rng.randbytes(rng.choice([0, 1, 160]))).decode()
        messages.append(json.dumps({
            "event": "media", "sequenceNumber": str(seq), "streamSid": SID,
            "media": {"track": rng.choice(["inbound", "outbound"]), "chunk": str(seq),
                      "timestamp": str(seq * 20), "payload": payload}}))
    messages.append(json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": "m"}}))
    messages.append(json.dumps({"event": "dtmf", "streamSid": SID,
                                "dtmf": {"track": "inbound_track", "digit": "7"}}))
    messages.append(json.dumps({"event": "stop", "streamSid": SID, "stop": {}}))
    return messages


def twilio_noise(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        message = random_json(rng)
        if isinstance(message, dict) or rng.random() < 0.5:
            message = {"event": rng.choice(["connected", "start", "media", "mark", "dtmf",
                                            "stop", "clear", "bogus"]),
                       rng.choice(["start", "media", "mark", "dtmf", "stop"]): random_json(rng),
                       "sequenceNumber": random_scalar(rng), "streamSid": random_scalar(rng)}
        try:
            return json.dumps(message)
        except ValueError:
            return "{}"
    if roll < 0.7:
        return rng.randbytes(rng.randint(0, 64)).decode("latin-1")
    return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(0, 16)))


def test_twilio_survives_hostile_input():
    rng = random.Random(SEED)
    for _ in range(2000):
        conn = TwilioConnection()
        check = Checker(conn.receive_text)
        for message in twilio_script(rng):
            roll = rng.random()
            if roll < 0.3:
                message = mutate_text(rng, message)
            elif roll < 0.4:
                check(twilio_noise(rng))
            check(message)
    conn = TwilioConnection()
    check = Checker(conn.receive_text)
    for text in ("[" * (MAX_MESSAGE_CHARS // 2), "x" * (MAX_MESSAGE_CHARS + 1), "{}"):
        check(text)
    assert check.dead


# ----------------------------------------------------------------- AudioHook

SESSION = "e160e428-53e2-487c-977d-96989bf5c99d"


def audiohook_script(rng: random.Random) -> list[tuple[str, Any]]:
    """(kind, payload): ("text", dict without seq) or ("bytes", frame)."""
    media = [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"],
              "rate": 8000},
             {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}]
    rng.shuffle(media)
    steps: list[tuple[str, Any]] = [("text", {"type": "open", "parameters": {
        "organizationId": str(uuid.uuid4()), "conversationId": str(uuid.uuid4()),
        "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
        "media": media, "customConfig": random_json(rng)}})]
    for _ in range(rng.randint(1, 10)):
        roll = rng.random()
        if roll < 0.5:
            steps.append(("bytes", rng.randbytes(rng.choice([0, 1, 2, 160, 320, 1600]))))
        else:
            kind = rng.choice(["ping", "paused", "resumed", "update", "discarded", "error",
                               "open", "bogus"])
            params = rng.choice([{}, {"language": "en-US"}, {"start": "PT1S", "discarded": "PT2S"},
                                 {"code": 500, "message": "x"}, random_json(rng)])
            steps.append(("text", {"type": kind, "parameters": params}))
    steps.append(("text", {"type": "close", "parameters": {"reason": "end"}}))
    return steps


def test_audiohook_survives_hostile_input():
    rng = random.Random(SEED + 1)
    for _ in range(1500):
        conn = AudioHookConnection(auto_closed=rng.random() < 0.8)
        check = Checker(lambda data, conn=conn: (conn.receive_bytes(data)
                                                  if isinstance(data, bytes)
                                                  else conn.receive_text(data)))
        seq = 0
        last_out = 0
        for kind, payload in audiohook_script(rng):
            roll = rng.random()
            if kind == "bytes":
                check(mutate_bytes(rng, payload) if roll < 0.2 else payload)
            else:
                seq += 1
                message = {"version": "2", "id": SESSION, "seq": seq, "serverseq": last_out,
                           "position": "PT%.3fS" % (seq / 10), **payload}
                if not isinstance(message["parameters"], dict):
                    message["parameters"] = {"value": message["parameters"]}
                try:
                    text = json.dumps(message)
                except ValueError:
                    text = "{}"
                if roll < 0.2:
                    text = mutate_text(rng, text)
                elif roll < 0.25:
                    message[rng.choice(["seq", "serverseq", "id", "version", "position"])] = \
                        random_scalar(rng)
                    text = json.dumps(message)
                check(text)
            if rng.random() < 0.1:
                conn.send_event([{"type": "streamguard", "data": {"n": seq}}])
            if rng.random() < 0.05:
                conn.disconnect("completed")
            if rng.random() < 0.05:
                conn.send_closed()
            for out in conn.data_to_send():
                assert len(out) <= MAX_TEXT_CHARS
                reply = json.loads(out)
                assert reply["version"] == "2"
                assert reply["seq"] == last_out + 1, "server seq must count up by one"
                assert reply["clientseq"] <= seq
                last_out = reply["seq"]
                info = reply["parameters"].get("info", "")
                assert len(info) <= MAX_INFO_CHARS
    conn = AudioHookConnection()
    check = Checker(conn.receive_bytes)
    check(b"\xff" * (MAX_AUDIO_FRAME_BYTES + 1))
    assert check.dead


# --------------------------------------------------------------- AudioSocket


def audiosocket_stream(rng: random.Random) -> bytes:
    frames = [b"\x01\x00\x10" + uuid.uuid4().bytes]
    for _ in range(rng.randint(0, 12)):
        roll = rng.random()
        if roll < 0.6:
            kind = rng.choice([0x10, 0x10, 0x10, 0x12, 0x16, 0x18])
            payload = rng.randbytes(rng.choice([0, 2, 320, 640, 1920]))
        elif roll < 0.7:
            kind, payload = 0x03, rng.choice([b"1", b"#", b"x", b""])
        elif roll < 0.8:
            kind, payload = 0xFF, rng.randbytes(rng.randint(0, 2))
        else:
            kind, payload = rng.randrange(256), rng.randbytes(rng.randint(0, 40))
        frames.append(bytes([kind]) + len(payload).to_bytes(2, "big") + payload)
    if rng.random() < 0.7:
        frames.append(b"\x00\x00\x00")
    return b"".join(frames)


@pytest.mark.parametrize("part", range(2))
def test_audiosocket_survives_hostile_input(part):
    rng = random.Random(SEED + 2 + part)
    for _ in range(1500):
        conn = AudioSocketConnection(accepted_rates=rng.choice(
            [frozenset({8000}), frozenset({8000, 16000, 48000, 192000})]))
        check = Checker(conn.receive_data)
        stream = audiosocket_stream(rng)
        roll = rng.random()
        if roll < 0.4:
            stream = mutate_bytes(rng, stream)
        elif roll < 0.5:
            stream = rng.randbytes(rng.randint(0, 200))
        i = 0
        while i < len(stream):
            step = rng.choice([1, 2, 3, 7, 64, 1000, len(stream)])
            check(stream[i:i + step])
            assert conn.buffered_bytes <= MAX_BUFFERED_BYTES
            i += step
    conn = AudioSocketConnection()
    check = Checker(conn.receive_data)
    check(b"\x01\x00\x10" + bytes(16) + b"\x10\xff\xff" + bytes(70_000))
    assert check.dead and conn.buffered_bytes == 0
