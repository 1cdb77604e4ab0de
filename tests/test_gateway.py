"""The telephony gateway end to end over loopback, with real protocol clients."""

import asyncio
import json

import httpx
import numpy as np
import pytest

from gateway.replay import replay_audiosocket, replay_twilio
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from gateway.sinks import verify
from streamguard import GuardConfig

from .conftest import voiced


class Collect:
    def __init__(self):
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def of(self, type_, **match):
        return [r for r in self.records if r.get("type") == type_
                and all(r.get(k) == v for k, v in match.items())]


@pytest.fixture
async def gateway(level_model):
    sink = Collect()
    settings = GatewaySettings(port=0, audiosocket_port=0, idle_timeout_s=3.0,
                               guard=GuardConfig(model_path=level_model))
    gw = Gateway(settings, sinks=[sink])
    await gw.start()
    gw.sink = sink
    yield gw
    await gw.stop()


def call(quiet_s, loud_s, rate=8000):
    parts = [voiced(quiet_s, 0.03, rate=rate)]
    if loud_s:
        parts.append(voiced(loud_s, 0.8, rate=rate))
    return np.concatenate(parts)


async def test_twilio_genuine_call_stays_clear(gateway):
    url = f"ws://127.0.0.1:{gateway.port}/media/twilio"
    result = await replay_twilio(url, call(6, 0), speed=8, parameters={"tenant": "bank"})
    await asyncio.sleep(0.3)
    finals = [r for r in gateway.sink.of("verdict") if r["final"]]
    assert len(finals) == 1 and finals[0]["state"] == "clear"
    assert finals[0]["tenant"] == "bank" and finals[0]["leg"] == "caller"
    assert gateway.sink.of("action") == []
    assert result.audio_frames == 0


async def test_twilio_synthetic_call_gets_warning_hold_and_audio(gateway):
    url = f"ws://127.0.0.1:{gateway.port}/media/twilio"
    result = await replay_twilio(url, call(3, 10), speed=4, linger=0.5)
    kinds = [a["kind"] for a in gateway.sink.of("action")]
    assert "hold" in kinds
    actions = gateway.sink.of("action")
    warn = next(a for a in actions if a["kind"] == "warn")
    hold = next(a for a in actions if a["kind"] == "hold")
    # The synthetic speech starts at 3 s. A 4 s window must fill with it and the state must
    # hold for two hops (hysteresis): a warning within 5 s, a hold once the fused interval
    # has narrowed over a few more windows.
    assert warn["at"] - 3.0 <= 5.0
    assert warn["at"] <= hold["at"] <= 3.0 + 8.0
    assert result.audio_seconds > 1.0  # the prompt and hold audio were played back
    marks = [m["mark"]["name"] for m in result.of_event("mark")]
    assert "streamguard:hold" in marks


async def test_hold_is_released_when_the_call_turns_clear(gateway):
    url = f"ws://127.0.0.1:{gateway.port}/media/twilio"
    pcm = np.concatenate([call(2, 9), call(16, 0)])
    result = await replay_twilio(url, pcm, speed=6, linger=0.5)
    kinds = [a["kind"] for a in gateway.sink.of("action")]
    assert "hold" in kinds and "release" in kinds
    assert kinds.index("hold") < kinds.index("release")
    events = [m.get("event") for m in result.messages]
    assert "clear" in events  # Twilio's buffered hold audio is flushed on release
    assert "streamguard:release" in [m["mark"]["name"] for m in result.of_event("mark")]


async def test_audiosocket_call_is_scored_and_hears_the_hold(gateway):
    result = await replay_audiosocket("127.0.0.1", gateway.audiosocket_port, call(3, 10),
                                      speed=4, linger=0.5)
    finals = [r for r in gateway.sink.of("verdict", protocol="audiosocket") if r["final"]]
    assert finals and finals[0]["state"] == "synthetic"
    assert result.audio_seconds > 1.0 and result.audio_frames > 50  # 20 ms slin frames


async def test_health_metrics_policy_endpoints(gateway):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json()["status"] == "ready"
        assert "streamguard_windows_scored_total" in (await client.get("/metrics")).text
        policy = (await client.get("/policy")).json()
        assert policy["name"] == "default" and policy["rules"]


async def test_malformed_twilio_input_closes_only_that_call(gateway):
    import websockets

    url = f"ws://127.0.0.1:{gateway.port}/media/twilio"
    good = asyncio.create_task(replay_twilio(url, call(5, 0), speed=5))
    async with websockets.connect(url) as bad:
        await bad.send("{not json")
        await bad.send(json.dumps({"event": "media", "media": {"payload": "%%%"}}))
        await bad.send(b"\x00" * 100)
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(50):
                await asyncio.wait_for(bad.recv(), 2)
    await good
    await asyncio.sleep(0.3)
    finals = [r for r in gateway.sink.of("verdict") if r["final"]]
    assert any(f["state"] == "clear" for f in finals)


async def test_signed_webhook_receives_actions(level_model):
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    received = []

    async def hook(request):
        body = await request.body()
        received.append((request.headers["StreamGuard-Signature"], body))
        return Response(status_code=204)

    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/hook", hook,
                                                                    methods=["POST"])]),
                                           host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    server.install_signal_handlers = lambda: None
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    settings = GatewaySettings(port=0, audiosocket_port=0,
                               guard=GuardConfig(model_path=level_model),
                               webhook_url=f"http://127.0.0.1:{port}/hook", webhook_secret="s3cret")
    gw = Gateway(settings)
    await gw.start()
    try:
        await replay_twilio(f"ws://127.0.0.1:{gw.port}/media/twilio", call(2, 8), speed=4)
    finally:
        await gw.stop()
        server.should_exit = True
        await task
    assert received
    header, body = received[0]
    assert verify("s3cret", header, body) and not verify("wrong", header, body)
    assert json.loads(body)["type"] == "action"


async def test_audiohook_stereo_call_scores_both_legs_and_reports_events(gateway):
    from gateway.replay import replay_audiohook

    url = f"ws://127.0.0.1:{gateway.port}/media/audiohook"
    result = await replay_audiohook(url, call(3, 10), call(13, 0), speed=4,
                                    custom_config={"tenant": "bank", "claimed_id": "c-17"})
    finals = {r["leg"]: r for r in gateway.sink.of("verdict", protocol="audiohook")
              if r["final"]}
    assert finals["caller"]["state"] == "synthetic"
    assert finals["agent"]["state"] == "clear"
    assert finals["caller"]["tenant"] == "bank"
    types = [m["type"] for m in result.messages]
    assert types[0] == "opened" and types[-1] == "closed"
    seqs = [m["seq"] for m in result.messages]
    assert seqs == list(range(1, len(seqs) + 1))
    reported = [e["data"] for m in result.messages if m["type"] == "event"
                for e in m["parameters"]["entities"]]
    assert any(r["type"] == "action" and r["kind"] == "warn" for r in reported)
    # The final verdicts reach Genesys before ``closed``.
    assert any(r["type"] == "verdict" and r["final"] and r["leg"] == "caller" for r in reported)


async def test_audiohook_wrong_sequence_gets_disconnect_error(gateway):
    import uuid

    import websockets

    sid = str(uuid.uuid4())
    url = f"ws://127.0.0.1:{gateway.port}/media/audiohook"
    async with websockets.connect(url, additional_headers={"Audiohook-Session-Id": sid}) as ws:
        await ws.send(json.dumps({"version": "2", "id": sid, "type": "ping", "seq": 5,
                                  "serverseq": 0, "position": "PT0S", "parameters": {}}))
        replies = [json.loads(m) async for m in ws]
    assert replies[-1]["type"] == "disconnect" and replies[-1]["parameters"]["reason"] == "error"
    assert gateway.runtime.metrics.protocol_errors["audiohook"] == 1


async def test_slow_loris_and_silent_peers_are_closed_after_idle_timeout(gateway):
    import websockets

    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.audiosocket_port)

    async def trickle():
        # A UUID frame header, then one byte at a time: never a whole frame.
        for byte in b"\x01\x00\x10" + bytes(16):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.5)

    trickling = asyncio.create_task(trickle())
    assert await asyncio.wait_for(reader.read(), 10) in (b"", b"\x00\x00\x00")
    trickling.cancel()
    writer.close()
    async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/media/twilio") as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert loop.time() - started < 3.0 * 2 + 4.0  # two idle timeouts of 3 s, with slack


async def test_peer_that_stops_reading_does_not_stall_other_calls(level_model):
    import websockets

    settings = GatewaySettings(port=0, audiosocket_port=0, send_timeout_s=0.5,
                               guard=GuardConfig(model_path=level_model))
    sink = Collect()
    gw = Gateway(settings, sinks=[sink])
    await gw.start()
    try:
        url = f"ws://127.0.0.1:{gw.port}/media/twilio"
        # A peer that streams a synthetic call but never reads the prompt audio sent back.
        stalled = await websockets.connect(url, max_queue=1, max_size=2**20)
        stalled.transport.pause_reading()
        feed = asyncio.create_task(_feed_twilio(stalled, call(1, 12), speed=6))
        good = await replay_twilio(url, call(4, 0), speed=4)
        await asyncio.wait_for(feed, 20)
        await stalled.close()
    finally:
        await gw.stop()
    finals = [r for r in sink.of("verdict") if r["final"]]
    assert len(finals) == 2
    # Waiting on the stuck peer (0.5 s send timeout) would make >= 100 of the good
    # call's 5 ms frames late at speed 4; a loaded 2-core box makes a handful late.
    assert good.late_frames <= good.frames_sent // 10, good


async def _feed_twilio(ws, pcm8k, speed):
    import base64

    from streamguard.media import ulaw_encode

    sid = "MZ" + "1" * 32
    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid,
                              "start": {"streamSid": sid, "callSid": "CA1", "tracks": ["inbound"],
                                        "customParameters": {},
                                        "mediaFormat": {"encoding": "audio/x-mulaw",
                                                        "sampleRate": 8000, "channels": 1}}}))
    for i, start in enumerate(range(0, len(pcm8k), 160)):
        payload = base64.b64encode(ulaw_encode(pcm8k[start:start + 160])).decode()
        try:
            await ws.send(json.dumps({"event": "media", "sequenceNumber": str(i + 2),
                                      "streamSid": sid,
                                      "media": {"track": "inbound", "chunk": str(i + 1),
                                                "timestamp": str(i * 20), "payload": payload}}))
        except websockets_closed():
            return
        await asyncio.sleep(0.02 / speed)


def websockets_closed():
    import websockets

    return websockets.ConnectionClosed


async def test_graceful_shutdown_records_final_verdicts_of_live_calls(level_model):
    sink = Collect()
    gw = Gateway(GatewaySettings(port=0, audiosocket_port=0,
                                 guard=GuardConfig(model_path=level_model)), sinks=[sink])
    await gw.start()
    url = f"ws://127.0.0.1:{gw.port}/media/twilio"
    live = asyncio.create_task(replay_twilio(url, call(20, 0), speed=4))
    await asyncio.sleep(2.0)
    await gw.stop()
    live.cancel()
    await asyncio.gather(live, return_exceptions=True)
    finals = [r for r in sink.of("verdict") if r["final"]]
    ended = sink.of("call_ended")
    assert len(finals) == 1 and finals[0]["windows_scored"] > 0
    assert ended and ended[0]["reason"] == "gateway shutdown"
