"""Control-plane HTTP API: keys and roles, tenant isolation, policies, sessions, limits, fuzz."""

import asyncio
import json
import sqlite3
import threading

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.control.api import TokenBuckets
from gateway.control.tenants import ROLES, TenantStore
from gateway.replay import replay_twilio
from streamguard.audit import AuditLog
from streamguard.policy import DEFAULT_POLICY

from .control_helpers import ADMIN, auth, call, start_env, stop_env, wait_for


@pytest.fixture
async def env(level_model, tmp_path, monkeypatch):
    env = await start_env(level_model, tmp_path, monkeypatch)
    yield env
    await stop_env(env)


def endpoints(env):
    return [e for e, _ in env.gateway.control.api.endpoints]


def concrete(path, tenant="bank", session="nope", key_id="000000000000"):
    return (path.replace("{tenant}", tenant).replace("{session}", session)
            .replace("{key_id}", key_id))


# -- keys ---------------------------------------------------------------------------------------


def test_keys_are_hashed_shown_once_and_revocable(tmp_path):
    store = TenantStore(tmp_path / "c.sqlite3")
    store.add_tenant("bank")
    key_id, key = store.create_key("bank", "analyst")
    assert key.startswith(f"sgk_{key_id}_") and len(key) > 50
    assert store.authenticate(key).role == "analyst"
    store.close()
    raw = (tmp_path / "c.sqlite3").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("c.sqlite3-*"))
    assert key.encode() not in raw and key.split("_")[-1].encode() not in raw
    store = TenantStore(tmp_path / "c.sqlite3")
    assert "key" not in store.keys("bank")[0]
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.revoke_key(key_id)
    assert store.authenticate(key) is None
    with pytest.raises(ValueError):
        store.create_key("bank", "root")
    with pytest.raises(ValueError):
        store.create_key("nobody", "viewer")


async def test_key_lifecycle_over_http(env):
    c = env.client
    r = await c.post("/api/v1/tenants/bank/keys", json={"role": "viewer", "label": "ci"},
                     headers=auth(env.keys["bank"]["admin"]))
    assert r.status_code == 201
    key, key_id = r.json()["key"], r.json()["key_id"]
    assert (await c.get("/api/v1/policy", headers=auth(key))).status_code == 200
    listed = (await c.get("/api/v1/tenants/bank/keys",
                          headers=auth(env.keys["bank"]["admin"]))).json()["keys"]
    assert key_id in [k["key_id"] for k in listed] and key not in json.dumps(listed)
    # another tenant's admin cannot revoke it
    r = await c.delete(f"/api/v1/keys/{key_id}", headers=auth(env.keys["telco"]["admin"]))
    assert r.status_code == 403
    r = await c.delete(f"/api/v1/keys/{key_id}", headers=auth(env.keys["bank"]["admin"]))
    assert r.status_code == 200 and r.json()["revoked"]
    assert (await c.get("/api/v1/policy", headers=auth(key))).status_code == 401


async def test_every_endpoint_rejects_missing_invalid_revoked_keys_and_low_roles(env):
    c = env.client
    r = await c.post("/api/v1/tenants/bank/keys", json={"role": "admin"},
                     headers=auth(env.keys["bank"]["admin"]))
    revoked, revoked_id = r.json()["key"], r.json()["key_id"]
    await c.delete(f"/api/v1/keys/{revoked_id}", headers=auth(env.keys["bank"]["admin"]))
    bad_headers = [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"},
                   auth("sgk_000000000000_" + "A" * 43), auth(ADMIN + "x"), auth(revoked)]
    checked = 0
    for e in endpoints(env):
        url = "/api/v1" + concrete(e.path)
        for headers in bad_headers:
            r = await c.request(e.method, url, headers=headers, json={})
            assert r.status_code == 401, (e.method, e.path, headers, r.text)
            assert r.json()["error"]
        for role in ROLES:
            if ROLES.index(role) < ROLES.index(e.role):
                r = await c.request(e.method, url, headers=auth(env.keys["bank"][role]),
                                    json={})
                assert r.status_code == 403, (e.method, e.path, role, r.text)
                checked += 1
    assert checked >= 15
    # only the super admin creates tenants
    r = await c.post("/api/v1/tenants", json={"name": "x"},
                     headers=auth(env.keys["bank"]["admin"]))
    assert r.status_code == 403


async def test_tenant_isolation_on_every_endpoint(env):
    """A key of bank sees nothing of telco: named telco paths are 403, telco sessions 404,
    lists and the report only ever contain bank."""
    c = env.client
    telco = auth(env.keys["telco"]["admin"])
    url = f"ws://127.0.0.1:{env.port}/media/twilio"
    await replay_twilio(url, call(2, 4), speed=8, parameters={"tenant": "bank"})
    await wait_for(lambda: env.gateway.control.hub.last > 0 and not env.gateway.runtime.calls)
    bank_sessions = (await c.get("/api/v1/sessions", headers=auth(env.keys["bank"]["viewer"])))
    past = bank_sessions.json()["past"]
    assert len(past) == 1
    bank_call = past[0]["session"]
    await c.put("/api/v1/policy", json=DEFAULT_POLICY.to_dict(),
                headers=auth(env.keys["bank"]["admin"]))
    for e in endpoints(env):
        if "{tenant}" in e.path:
            r = await c.request(e.method, "/api/v1" + concrete(e.path, tenant="bank"),
                                headers=telco, json={"role": "viewer", "url": "http://x/",
                                                     "secret": "s" * 20})
            assert r.status_code == 403, (e.method, e.path, r.text)
        if "{session}" in e.path:
            r = await c.request(e.method, "/api/v1" + concrete(e.path, session=bank_call),
                                headers=telco, json={"label": "wrong"})
            assert r.status_code == 404, (e.method, e.path, r.text)
        if e.method == "GET" and "{" not in e.path:
            r = await c.get("/api/v1" + e.path, headers=telco)
            assert r.status_code == 200, (e.path, r.text)
            assert "bank" not in r.text and bank_call not in r.text, e.path
            r = await c.get("/api/v1" + e.path, headers=telco, params={"tenant": "bank"})
            assert r.status_code == 403, e.path
    report = (await c.get("/api/v1/report", headers=auth(env.keys["bank"]["viewer"]))).json()
    assert report["scope"]["tenant"] == "bank" and report["volumes"]


# -- policies -----------------------------------------------------------------------------------


async def test_policy_versions_are_validated_and_audited(env, tmp_path):
    c, admin = env.client, auth(env.keys["bank"]["admin"])
    current = (await c.get("/api/v1/policy", headers=admin)).json()
    assert current["version"] == 0 and current["policy"]["name"] == "default"
    bad = {**DEFAULT_POLICY.to_dict(), "rules": [{"name": "x", "state": "nonsense",
                                                  "actions": ["hold"]}]}
    r = await c.put("/api/v1/policy", json=bad, headers=admin)
    assert r.status_code == 422 and "invalid policy" in r.json()["error"]
    assert (await c.put("/api/v1/policy", json={"policy": 3}, headers=admin)).status_code == 422
    changed = {**DEFAULT_POLICY.to_dict(), "version": "2-strict"}
    changed["rules"][0]["min_probability"] = 0.4
    for expect in (1, 2):
        r = await c.put("/api/v1/policy", json={"policy": changed}, headers=admin)
        assert r.status_code == 200 and r.json()["version"] == expect
    got = (await c.get("/api/v1/policy", headers=auth(env.keys["bank"]["viewer"]))).json()
    assert got["version"] == 2 and got["policy"]["rules"][0]["min_probability"] == 0.4
    versions = (await c.get("/api/v1/policy/versions", headers=admin)).json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert (await c.get("/api/v1/policy",
                        headers=auth(env.keys["telco"]["viewer"]))).json()["version"] == 0
    assert (await c.put("/api/v1/policy", json=changed,
                        headers=auth(env.keys["bank"]["analyst"]))).status_code == 403
    await asyncio.sleep(0.5)
    with AuditLog(tmp_path / "audit.sqlite3", readonly=True) as log:
        changes = list(log.entries(types=["policy_change"]))
    assert [(e.tenant, e.record["version"]) for e in changes] == [("bank", 1), ("bank", 2)]
    assert changes[0].record["changed_by"] == env.key_ids[("bank", "admin")]
    guard = env.gateway.runtime.guard
    assert guard.policy_for("bank").version == "2-strict"  # in force for new bank calls
    assert guard.policy_for("telco") is guard.config.policy
    session = guard.open_session("policy-check", tenant="bank")
    assert session.policy.rules[0].min_probability == 0.4
    await guard.close_session("policy-check")


# -- sessions -----------------------------------------------------------------------------------


async def test_sessions_live_and_past_with_analyst_hold_release_feedback(env):
    c = env.client
    analyst, viewer = auth(env.keys["bank"]["analyst"]), auth(env.keys["bank"]["viewer"])
    url = f"ws://127.0.0.1:{env.port}/media/twilio"
    replay = asyncio.create_task(replay_twilio(url, call(8, 0), speed=2, linger=0.3,
                                               parameters={"tenant": "bank"}))

    async def live():
        r = await c.get("/api/v1/sessions", headers=viewer)
        return r.json()["live"]

    live_now = await wait_for(live)
    call_id = live_now[0]["session"]
    assert live_now[0]["legs"]["caller"]["state"]
    assert (await c.get("/api/v1/sessions",
                        headers=auth(env.keys["telco"]["viewer"]))).json()["live"] == []
    r = await c.post(f"/api/v1/sessions/{call_id}/hold", json={"reason": "looks odd"},
                     headers=analyst)
    assert r.status_code == 200, r.text
    await asyncio.sleep(0.5)
    r = await c.post(f"/api/v1/sessions/{call_id}/release", headers=analyst)
    assert r.status_code == 200
    assert (await c.post(f"/api/v1/sessions/{call_id}/hold",
                         headers=viewer)).status_code == 403
    result = await replay
    marks = [m["mark"]["name"] for m in result.of_event("mark")]
    assert "streamguard:hold" in marks and "streamguard:release" in marks
    assert result.audio_seconds > 0.1  # the hold prompt was played to the call
    assert (await c.post(f"/api/v1/sessions/{call_id}/hold",
                         headers=analyst)).status_code == 404  # no longer live
    r = await c.post(f"/api/v1/sessions/{call_id}/feedback",
                     json={"label": "wrong", "note": "agent knows the caller"}, headers=analyst)
    assert r.status_code == 201
    await asyncio.sleep(0.5)
    detail = (await c.get(f"/api/v1/sessions/{call_id}", headers=viewer)).json()
    assert not detail["live"] and detail["ended"] and detail["started"]["protocol"] == "twilio"
    assert detail["timeline"] and detail["timeline"][-1]["final"]
    assert detail["model_versions"] and detail["evidence"]
    kinds = [(a["kind"], a["source"], a["by"]) for a in detail["actions"]]
    assert ("hold", "analyst", env.key_ids[("bank", "analyst")]) in kinds
    assert ("release", "analyst", env.key_ids[("bank", "analyst")]) in kinds
    assert detail["feedback"][0]["label"] == "wrong"
    assert (await c.get("/api/v1/sessions/unknown", headers=viewer)).status_code == 404


# -- limits, docs -------------------------------------------------------------------------------


async def test_body_size_limit_and_bad_json(env):
    c, admin = env.client, auth(env.keys["bank"]["admin"])
    big = b'{"policy": "' + b"x" * (70 * 1024) + b'"}'
    r = await c.put("/api/v1/policy", content=big, headers=admin)
    assert r.status_code == 413

    async def chunks():  # no content-length: the streamed size is still counted
        for _ in range(20):
            yield b" " * 8192

    r = await c.put("/api/v1/policy", content=chunks(), headers=admin)
    assert r.status_code == 413
    for body in (b"{", b"[1,2]", b'"x"', b"\xff\xfe", b"[" * 5000 + b"]" * 5000):
        r = await c.put("/api/v1/policy", content=body, headers=admin)
        assert r.status_code == 400, body[:10]


def test_token_bucket():
    buckets = TokenBuckets(rate=0.0001, burst=3)
    assert [buckets.allow("k") for _ in range(4)] == [True, True, True, False]
    assert buckets.allow("other")


async def test_rate_limit_answers_429(level_model, tmp_path, monkeypatch):
    env = await start_env(level_model, tmp_path, monkeypatch)
    try:
        env.gateway.control.api.buckets = TokenBuckets(rate=0.01, burst=5)
        codes = [(await env.client.get("/api/v1/policy",
                                       headers=auth(env.keys["bank"]["viewer"]))).status_code
                 for _ in range(8)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3
        # another key has its own bucket
        assert (await env.client.get("/api/v1/policy", headers=auth(
            env.keys["bank"]["admin"]))).status_code == 200
        # failed authentications are limited per client address
        env.gateway.control.api.failures = TokenBuckets(rate=0.01, burst=3)
        codes = [(await env.client.get("/api/v1/policy", headers=auth("nope"))).status_code
                 for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
    finally:
        await stop_env(env)


async def test_openapi_lists_every_endpoint(env):
    spec = (await env.client.get("/api/v1/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    for e in endpoints(env):
        assert e.method.lower() in spec["paths"]["/api/v1" + e.path]
    assert "/api/v1/events" in spec["paths"]


# -- fuzzing ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def threaded_env(level_model, tmp_path_factory):
    """The gateway on its own loop in a thread, so hypothesis drives it synchronously."""
    monkeypatch = pytest.MonkeyPatch()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    tmp = tmp_path_factory.mktemp("fuzz")
    env = asyncio.run_coroutine_threadsafe(start_env(level_model, tmp, monkeypatch),
                                           loop).result(60)
    yield env
    asyncio.run_coroutine_threadsafe(stop_env(env), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    monkeypatch.undo()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=30) | st.sampled_from(["admin", "viewer", "hold", "clear", "synthetic",
                                             "wrong", "http://127.0.0.1:9/x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "role", "label", "url", "secret", "policy", "rules", "version",
                         "state", "actions", "reason", "note", "verdict_seq", "x"]),
        inner, max_size=5),
    max_leaves=20)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), body=st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.fixed_dictionaries({"policy": st.fixed_dictionaries(
        {"name": st.text(max_size=5), "version": json_values,
         "rules": st.lists(st.dictionaries(st.sampled_from(
             ["name", "state", "actions", "min_probability", "cooldown_s"]), json_values),
             max_size=3)})}).map(lambda v: json.dumps(v).encode())))
def test_fuzzed_bodies_never_500(threaded_env, data, body):
    env = threaded_env
    body_endpoints = [e for e in endpoints(env) if e.body]
    e = data.draw(st.sampled_from(body_endpoints))
    role = data.draw(st.sampled_from(["admin", "analyst", ADMIN]))
    key = ADMIN if role == ADMIN else env.keys["bank"][role]
    path = concrete(e.path, session=data.draw(st.sampled_from(["nope", "a%20b", "a.b", "x" * 300])))
    with httpx.Client(base_url=f"http://127.0.0.1:{env.port}", timeout=10) as client:
        r = client.request(e.method, "/api/v1" + path, content=body,
                           params={"tenant": "bank"} if role == ADMIN else None,
                           headers={**auth(key), "Content-Type": "application/json"})
    assert r.status_code < 500, (e.method, e.path, body[:200], r.text)
    assert r.headers["content-type"].startswith("application/json")


def test_control_store_file_holds_no_plaintext_secret(threaded_env):
    db = threaded_env.gateway.settings.control_db
    con = sqlite3.connect(db)
    hashes = [h for (h,) in con.execute("SELECT key_hash FROM api_keys")]
    con.close()
    assert len(hashes) == 6 and all(len(h) == 64 for h in hashes)
