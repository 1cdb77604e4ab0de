"""Live events WebSocket: tenant filtering, resume with since=SEQ, slow subscribers dropped."""

import asyncio
import json

import pytest
import websockets

from gateway.control.events import CLOSE_SLOW, EventHub
from gateway.replay import replay_twilio
from streamguard.audit import AuditLog

from .control_helpers import ADMIN, auth, call, start_env, stop_env, wait_for


@pytest.fixture
async def env(level_model, tmp_path, monkeypatch):
    env = await start_env(level_model, tmp_path, monkeypatch)
    yield env
    await stop_env(env)


def ws_url(env, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"ws://127.0.0.1:{env.port}/api/v1/events?{query}"


async def collect(ws, until, timeout=15.0):
    """Messages from ``ws`` until ``until(messages)`` is true."""
    out = []
    async with asyncio.timeout(timeout):
        while not until(out):
            out.append(json.loads(await ws.recv()))
    return out


def ended(messages):
    return any(m["type"] == "call_ended" for m in messages)


async def test_events_are_per_tenant_and_carry_audit_seqs(env, tmp_path):
    media = f"ws://127.0.0.1:{env.port}/media/twilio"
    async with websockets.connect(ws_url(env, key=env.keys["bank"]["viewer"])) as bank, \
            websockets.connect(ws_url(env), additional_headers=auth(
                env.keys["telco"]["viewer"])) as telco, \
            websockets.connect(ws_url(env, key=ADMIN)) as admin:
        await asyncio.sleep(0.1)
        await asyncio.gather(
            replay_twilio(media, call(2, 5), speed=8, parameters={"tenant": "bank"}),
            replay_twilio(media, call(3, 0), speed=8, parameters={"tenant": "telco"}))
        got_bank = await collect(bank, ended)
        got_telco = await collect(telco, ended)
        got_all = await collect(admin, lambda m: sum(x["type"] == "call_ended" for x in m) == 2)
    assert {m["tenant"] for m in got_bank} == {"bank"}
    assert {m["tenant"] for m in got_telco} == {"telco"}
    bank_calls = {m["record"].get("call_id") for m in got_bank} - {None}
    assert len(bank_calls) == 1
    assert not bank_calls & {m["record"].get("call_id") for m in got_telco}
    assert {"call_started", "verdict", "action", "call_ended"} <= {m["type"] for m in got_bank}
    assert {m["tenant"] for m in got_all} == {"bank", "telco"}
    seqs = [m["seq"] for m in got_bank]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    await asyncio.sleep(0.3)
    with AuditLog(tmp_path / "audit.sqlite3", readonly=True) as log:
        by_seq = {e.seq: e for e in log.entries()}
    for m in got_bank:  # the same seq and record as the audit log
        assert by_seq[m["seq"]].record == m["record"]


async def test_bad_keys_and_other_tenants_are_refused(env):
    for url in (ws_url(env), ws_url(env, key="nope"),
                ws_url(env, key=env.keys["bank"]["viewer"], tenant="telco")):
        async with websockets.connect(url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd.code in (4401, 4403)


async def test_reconnect_with_since_loses_nothing_and_repeats_nothing(env):
    media = f"ws://127.0.0.1:{env.port}/media/twilio"
    key = env.keys["bank"]["viewer"]
    replay = asyncio.create_task(replay_twilio(media, call(3, 6), speed=3,
                                               parameters={"tenant": "bank"}))
    async with websockets.connect(ws_url(env, key=key, since=0)) as ws:
        first = await collect(ws, lambda m: len(m) >= 5)
    last = first[-1]["seq"]
    await asyncio.sleep(1.0)  # events happen while we are away
    async with websockets.connect(ws_url(env, key=key, since=last)) as ws:
        rest = await collect(ws, ended, timeout=30)
    await replay
    seqs = [m["seq"] for m in first + rest]
    assert seqs == sorted(set(seqs))  # no duplicate, in order
    # and no gap: exactly the bank entries of the log
    log = env.gateway.control.hub.audit
    logged = [e.seq for e in log.entries() if e.seq <= seqs[-1]
              and env.gateway.control.hub.resolver.tenant(e) == "bank"]
    assert seqs == logged
    # session filter
    call_id = next(m["record"]["call_id"] for m in first if m["type"] == "call_started")
    async with websockets.connect(ws_url(env, key=key, since=0, session=call_id)) as ws:
        only = await collect(ws, ended)
    assert {m["record"].get("call_id") for m in only} == {call_id}


async def test_slow_subscriber_is_dropped_without_blocking(level_model, tmp_path, monkeypatch):
    env = await start_env(level_model, tmp_path, monkeypatch, events_queue_size=5)
    try:
        hub: EventHub = env.gateway.control.hub
        async with websockets.connect(ws_url(env, key=env.keys["bank"]["viewer"]),
                                      max_queue=1) as ws:
            await wait_for(lambda: hub.subscribers)
            sub = next(iter(hub.subscribers))
            for i in range(2000):  # far more than the socket and queue can take
                env.gateway.runtime.emit({"type": "note", "tenant": "bank", "i": i})
            await wait_for(lambda: sub.dropped, timeout=10)
            assert sub not in hub.subscribers
            seen = []
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            assert info.value.rcvd.code == CLOSE_SLOW
        # what it got is a gap-free prefix; resuming from its last seq gets the rest
        notes = [m["record"]["i"] for m in seen if m["type"] == "note"]
        assert notes == list(range(len(notes))) and len(notes) < 2000
        # (with a 5-event queue a resume must not race the burst still being logged)
        await wait_for(lambda: env.gateway.control.hub.published >= 2000 + 8, timeout=20)
        async with websockets.connect(ws_url(env, key=env.keys["bank"]["viewer"],
                                             since=seen[-1]["seq"])) as ws:
            rest = await collect(ws, lambda m: m and m[-1]["record"].get("i") == 1999)
        assert [m["record"]["i"] for m in rest] == list(range(len(notes), 2000))
        # the gateway kept going: the HTTP API still answers
        r = await env.client.get("/api/v1/policy", headers=auth(env.keys["bank"]["viewer"]))
        assert r.status_code == 200
    finally:
        await stop_env(env)
