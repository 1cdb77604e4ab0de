"""Per-tenant signed webhooks to real loopback receivers: isolation, retries, dead letters,
the replay command, and no secret in any log line."""

import asyncio
import json
import logging

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from gateway.cli import main
from gateway.replay import replay_twilio
from gateway.sinks import verify

from .control_helpers import ADMIN, auth, call, start_env, stop_env, wait_for

SECRETS = {"bank": "bank-webhook-secret-0123456789", "telco": "telco-webhook-secret-987654321"}


class Receiver:
    """A loopback HTTP server recording signed POSTs; ``fail`` makes it answer 500."""

    def __init__(self):
        self.received = []
        self.attempts = 0
        self.fail = False

    async def hook(self, request):
        self.attempts += 1
        if self.fail:
            return Response(status_code=500)
        body = await request.body()
        self.received.append((request.headers["StreamGuard-Signature"], body))
        return Response(status_code=204)

    async def __aenter__(self):
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_level="warning", lifespan="off"))
        self.server.install_signal_handlers = lambda: None
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}/hook"
        return self

    async def __aexit__(self, *exc):
        self.server.should_exit = True
        await self.task

    def events(self, secret):
        out = []
        for header, body in self.received:
            assert verify(secret, header, body)
            out.append(json.loads(body))
        return out


async def register(env, tenant, url):
    r = await env.client.put(f"/api/v1/tenants/{tenant}/webhook",
                             json={"url": url, "secret": SECRETS[tenant]},
                             headers=auth(env.keys[tenant]["admin"]))
    assert r.status_code == 200, r.text


@pytest.fixture
async def env(level_model, tmp_path, monkeypatch):
    env = await start_env(level_model, tmp_path, monkeypatch, webhook_attempts=3,
                          webhook_base_delay_s=0.05)
    yield env
    await stop_env(env)


async def test_each_tenant_gets_only_its_own_signed_events(env):
    async with Receiver() as bank, Receiver() as telco:
        await register(env, "bank", bank.url)
        await register(env, "telco", telco.url)
        r = await env.client.put("/api/v1/tenants/bank/webhook", json={
            "url": "http://evil/", "secret": "x" * 20}, headers=auth(env.keys["telco"]["admin"]))
        assert r.status_code == 403
        media = f"ws://127.0.0.1:{env.port}/media/twilio"
        await replay_twilio(media, call(2, 6), speed=8, parameters={"tenant": "bank"})
        await wait_for(lambda: any(json.loads(b)["type"] == "verdict"
                                   for _, b in bank.received))
        await asyncio.sleep(0.3)
        got = bank.events(SECRETS["bank"])
        assert {e["tenant"] for e in got} == {"bank"}
        assert "action" in {e["type"] for e in got}
        assert all(isinstance(e["seq"], int) for e in got)
        assert telco.received == []  # none of bank's events
        for _, body in bank.received:  # and a signature from another secret fails
            assert not verify(SECRETS["telco"], bank.received[0][0], body)


async def test_failed_deliveries_retry_then_dead_letter_then_replay(env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with Receiver() as hook:
        await register(env, "bank", hook.url)
        hook.fail = True
        env.gateway.runtime.emit({"type": "action", "kind": "hold", "tenant": "bank",
                                  "call_id": "c1", "rule": "r"})
        letters = await wait_for(lambda: env.gateway.control.store.dead_letters("bank"))
        assert hook.attempts == 3  # every attempt made, with backoff between them
        assert letters[0]["error"] == "HTTP 500" and letters[0]["attempts"] == 3
        r = await env.client.get("/api/v1/tenants/bank/dead-letters",
                                 headers=auth(env.keys["bank"]["admin"]))
        assert len(r.json()["dead_letters"]) == 1
        r = await env.client.get("/api/v1/tenants/bank/dead-letters",
                                 headers=auth(env.keys["telco"]["admin"]))
        assert r.status_code == 403
        hook.fail = False
        db = str(tmp_path / "control.sqlite3")
        code = await asyncio.to_thread(main, ["webhooks", "replay", "--tenant", "telco",
                                              "--control-db", db])
        assert code == 0 and hook.received == []  # another tenant's letters untouched
        code = await asyncio.to_thread(main, ["webhooks", "replay", "--tenant", "bank",
                                              "--control-db", db])
        assert code == 0
        [event] = hook.events(SECRETS["bank"])
        assert event["record"]["call_id"] == "c1" and event["type"] == "action"
        assert env.gateway.control.store.dead_letters() == []
    # nothing secret in any log line: API keys, the bootstrap key, webhook secrets
    text = caplog.text
    assert "webhook for tenant bank attempt" in text
    for secret in [ADMIN, *SECRETS.values(), *(k for ks in env.keys.values()
                                                for k in ks.values())]:
        assert secret not in text


def test_cli_tenant_and_key_commands(tmp_path, capsys):
    db = str(tmp_path / "control.sqlite3")
    assert main(["tenant", "add", "acme", "--control-db", db]) == 0
    assert main(["tenant", "add", "acme", "--control-db", db]) == 2
    capsys.readouterr()
    assert main(["key", "create", "acme", "--role", "analyst", "--control-db", db]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    key_id = key.split("_")[1]
    assert key.startswith("sgk_") and f"key id: {key_id}" in out.err
    from gateway.control.tenants import TenantStore

    store = TenantStore(db)
    assert store.authenticate(key).tenant == "acme"
    assert main(["key", "revoke", key_id, "--control-db", db]) == 0
    assert store.authenticate(key) is None
    assert main(["key", "revoke", key_id, "--control-db", db]) == 1
    assert main(["key", "create", "nobody", "--role", "viewer", "--control-db", db]) == 2
    store.close()
