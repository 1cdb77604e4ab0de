"""Two gateway processes sharing fleet state through a real redis-server on loopback.

A campaign of one synthetic voice split across both nodes is reported once;
when Redis goes away mid-call the calls are still scored (and the campaign
still seen locally), the gap is metered and noticed, and once Redis is back
the buffered summaries reach it and the other node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from gateway.replay import replay_twilio
from streamguard.media import StreamResampler, decode_file

from .conftest import REPO, SPEECH

REDIS = shutil.which("redis-server")
pytestmark = [
    pytest.mark.skipif(REDIS is None, reason="redis-server is not installed "
                                             "(apt-get install redis-server; .ci/run does)"),
    pytest.mark.skipif(not SPEECH.exists(), reason="shared speech corpus missing"),
]


SERVING = re.compile(r"streamguard serving: http://[^\s:]+:(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS is not None
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Node:
    """``streamguard serve`` in its own process, events read from its stdout.

    It binds port 0 and the test reads the bound port from its startup log line:
    a port picked here and bound later can be taken in between by one of the
    many outbound connections the suite opens.
    """

    def __init__(self, name: str, redis_port: int, model: Path, data_dir: Path) -> None:
        self.name = name
        self.port = 0
        self.records: list[dict] = []
        self.log: list[str] = []
        env = {**os.environ, "STREAMGUARD_DATA_DIR": str(data_dir)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from gateway.cli import main; raise SystemExit(main())",
             "serve", "--port", "0", "--audiosocket-port", "0",
             "--events-json", "--no-audit", "--model", str(model),
             "--fleet", f"redis://127.0.0.1:{redis_port}/0"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for target in (self._read, self._read_log):
            threading.Thread(target=target, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.records.append(json.loads(line))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if bound := SERVING.search(line):
                self.port = int(bound[1])

    def failure(self, what: str) -> str:
        return f"{self.name} {what}; its log:\n" + "\n".join(self.log[-30:])

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                if self.port:
                    with contextlib.suppress(httpx.TransportError):
                        url = f"http://127.0.0.1:{self.port}/readyz"
                        if (await client.get(url)).is_success:
                            return
                assert self.proc.poll() is None, self.failure(
                    f"exited with status {self.proc.returncode}")
                assert time.monotonic() < deadline, self.failure("not ready")
                await asyncio.sleep(0.1)

    async def metrics(self) -> dict[str, float]:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        return {k: float(v) for k, v in (line.split(" ", 1) for line in text.splitlines()
                                         if line.startswith("streamguard_fleet_"))}

    def of(self, type_: str, **match) -> list[dict]:
        return [r for r in list(self.records) if r.get("type") == type_
                and all(r.get(k) == v for k, v in match.items())]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def phone_call(i: int) -> np.ndarray:
    """~13 s of the one Piper voice (three sentences no other call uses), at 8 kHz: the
    first summary goes out after 4.8 s of speech, so the campaign forms mid-call."""
    pcm = np.concatenate([decode_file(SPEECH / f"spoof_piper/piper_{3 * i + k:03d}.flac").pcm
                          for k in (0, 1, 2)])
    down = StreamResampler(16000, 8000)
    return np.concatenate([down.push(pcm), down.flush()])


async def call(node: Node, i: int, speed: float = 4) -> None:
    await replay_twilio(f"ws://127.0.0.1:{node.port}/media/twilio", phone_call(i), speed=speed,
                        parameters={"tenant": "bank"}, linger=0.3)


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def fleet_reports(nodes: list[Node]) -> list[dict]:
    return [r for n in nodes for r in n.of("campaign", scope="fleet")]


def calls_of(node: Node) -> list[str]:
    return [r["call_id"] for r in node.of("call_started")]


async def test_campaign_across_two_gateways_survives_redis_going_away(level_model, tmp_path):
    import redis

    server = RedisServer(free_port())
    server.start()
    a = Node("a", server.port, level_model, tmp_path)
    b = Node("b", server.port, level_model, tmp_path)
    try:
        await asyncio.gather(a.ready(), b.ready())
        # 1. Six calls of one voice, three on each node, all live together.
        # Speed 2: the campaign must form while the calls are still live, even on a busy CPU.
        await asyncio.gather(*(call(a if i % 2 else b, i, speed=2) for i in range(6)))
        first = set(calls_of(a)) | set(calls_of(b))
        assert len(first) == 6 and len(calls_of(a)) == 3

        async def all_reported() -> bool:
            return {c for r in fleet_reports([a, b]) for c in r["new_calls"]} == first

        await until(all_reported, 10, "fleet reports of the first six calls")
        reports = fleet_reports([a, b])
        new = [r for r in reports if r["is_new"]]
        assert len(new) == 1 and new[0]["kind"] == "same_voice"
        campaign_id = new[0]["campaign_id"]
        assert {r["campaign_id"] for r in reports} == {campaign_id}
        reported = [c for r in reports for c in r["new_calls"]]
        assert sorted(reported) == sorted(first)  # every call reported once, fleet-wide
        # Live sessions on both nodes heard of it, under the one fleet name.
        for node in (a, b):
            live = node.of("campaign", campaign_id=campaign_id, leg="caller")
            assert {r["call_id"] for r in live} & set(calls_of(node)), node.name

        # 2. Redis goes away; calls go on and are still judged with local state.
        server.stop()
        await asyncio.gather(call(a, 6), call(a, 7), call(b, 8))
        outage = (set(calls_of(a)) | set(calls_of(b))) - first
        assert len(outage) == 3
        finals = {r["call_id"] for n in (a, b) for r in n.of("verdict", final=True)}
        assert outage <= finals
        metrics_a = await a.metrics()
        assert metrics_a["streamguard_fleet_connected"] == 0
        assert metrics_a["streamguard_fleet_gaps_total"] == 1
        assert metrics_a["streamguard_fleet_buffered_summaries"] >= 2
        assert a.of("notice", kind="fleet_gap") and b.of("notice", kind="fleet_gap")
        local = {r["call_id"] for n in (a, b) for r in n.of("campaign", leg="caller")}
        assert outage <= local  # the campaign is still seen from local state
        assert not [c for r in fleet_reports([a, b]) for c in r["new_calls"] if c in outage]

        # 3. Redis returns (empty: no persistence). Both nodes re-sync.
        server.start()

        async def resynced() -> bool:
            m = [await n.metrics() for n in (a, b)]
            return all(x["streamguard_fleet_connected"] == 1
                       and x["streamguard_fleet_buffered_summaries"] == 0
                       and x["streamguard_fleet_resyncs_total"] >= 1 for x in m)

        await until(resynced, 10, "re-sync after Redis returned")
        assert a.of("notice", kind="fleet_resync")
        stored = redis.Redis(port=server.port).xrange("streamguard:summaries")
        in_redis = {fields[b"call"].decode() for _, fields in stored}
        assert outage | first <= in_redis  # nothing recorded was lost

        async def outage_reported() -> bool:
            return outage <= {c for r in fleet_reports([a, b]) for c in r["new_calls"]}

        await until(outage_reported, 10, "fleet reports of the calls made during the gap")
        reported = [c for r in fleet_reports([a, b]) for c in r["new_calls"]]
        assert sorted(reported) == sorted(first | outage)  # still once per call
        assert [r["campaign_id"] for r in fleet_reports([a, b]) if r["is_new"]] == [campaign_id]
    finally:
        for node in (a, b):
            node.stop()
        server.stop()
