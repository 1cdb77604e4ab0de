"""Shared fixtures for the control-plane tests: a gateway with two tenants and their keys."""

import asyncio

import httpx
import numpy as np

from gateway.server import Gateway
from gateway.settings import GatewaySettings
from streamguard import GuardConfig

from .conftest import voiced

ADMIN = "bootstrap-admin-key-for-tests-0123456789"


class Collect:
    def __init__(self):
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def of(self, type_, **match):
        return [r for r in self.records if r.get("type") == type_
                and all(r.get(k) == v for k, v in match.items())]


def call(quiet_s, loud_s, rate=8000):
    parts = [voiced(quiet_s, 0.03, rate=rate)]
    if loud_s:
        parts.append(voiced(loud_s, 0.8, rate=rate))
    return np.concatenate(parts)


def auth(key):
    return {"Authorization": f"Bearer {key}"}


class Env:
    """A started gateway, an HTTP client, and keys: ``keys[tenant][role]``."""

    def __init__(self, gateway, client, keys, sink):
        self.gateway = gateway
        self.client = client
        self.keys = keys
        self.sink = sink
        self.key_ids = {}

    @property
    def port(self):
        return self.gateway.port


async def start_env(level_model, tmp_path, monkeypatch, **overrides):
    monkeypatch.setenv("STREAMGUARD_ADMIN_KEY", ADMIN)
    sink = Collect()
    settings = GatewaySettings(port=0, audiosocket_port=0, idle_timeout_s=3.0,
                               guard=GuardConfig(model_path=level_model),
                               audit_db=tmp_path / "audit.sqlite3",
                               control_db=tmp_path / "control.sqlite3",
                               webrtc_enabled=False, fleet_enabled=False,
                               **{"api_rate_per_s": 1000.0, "api_burst": 1000, **overrides})
    gw = Gateway(settings, sinks=[sink])
    await gw.start()
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=10)
    keys = {}
    env = Env(gw, client, keys, sink)
    for tenant in ("bank", "telco"):
        r = await client.post("/api/v1/tenants", json={"name": tenant}, headers=auth(ADMIN))
        assert r.status_code == 201, r.text
        keys[tenant] = {}
        for role in ("admin", "analyst", "viewer"):
            r = await client.post(f"/api/v1/tenants/{tenant}/keys", json={"role": role},
                                  headers=auth(ADMIN))
            assert r.status_code == 201, r.text
            keys[tenant][role] = r.json()["key"]
            env.key_ids[(tenant, role)] = r.json()["key_id"]
    return env


async def stop_env(env):
    await env.client.aclose()
    await env.gateway.stop()


async def wait_for(predicate, timeout=10.0, step=0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)
