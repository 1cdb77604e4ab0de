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
    assert result.audio_frames > 10  # the prompt and hold audio were played back
    marks = [m["mark"]["name"] for m in result.of_event("mark")]
    assert "streamguard:hold" in marks


async def test_audiosocket_call_is_scored_and_hears_the_hold(gateway):
    result = await replay_audiosocket("127.0.0.1", gateway.audiosocket_port, call(3, 10),
                                      speed=4, linger=0.5)
    finals = [r for r in gateway.sink.of("verdict", protocol="audiosocket") if r["final"]]
    assert finals and finals[0]["state"] == "synthetic"
    assert result.audio_frames > 10


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
