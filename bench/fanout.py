"""Control-plane event fan-out: events/s from the core to 100 WebSocket subscribers and
to a tenant webhook, over loopback.

Starts a gateway in this process (control plane on, audit log in a temp dir),
connects N subscribers to ``/api/v1/events`` (in a separate process, so the
clients do not share the gateway's CPU), pushes E records through
``GatewayRuntime.emit`` (the path every verdict and action takes: audit log ->
hub -> subscribers), and measures how long until every subscriber has every
event. Then registers a webhook on a loopback receiver and measures delivered
webhooks/s.

    python -m bench.fanout [--subscribers 100] [--events 5000]

Writes bench/results/fanout.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ADMIN = "bench-admin-key-0123456789abcdef"


def _subscribers(url: str, n: int, events: int, ready: Any, out: Any) -> None:
    import websockets

    async def one() -> float:
        async with websockets.connect(url, max_queue=None) as ws:
            ready.put(1)
            got = 0
            while got < events:
                msg = json.loads(await ws.recv())
                if msg["type"] == "bench":
                    got += 1
            return time.time()

    async def main() -> list[float]:
        return list(await asyncio.gather(*(one() for _ in range(n))))

    out.put(asyncio.run(main()))


async def run(subscribers: int, events: int) -> dict[str, Any]:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from gateway.server import Gateway
    from gateway.settings import GatewaySettings

    os.environ["STREAMGUARD_ADMIN_KEY"] = ADMIN
    tmp = Path(tempfile.mkdtemp(prefix="sg-fanout-"))
    gw = Gateway(GatewaySettings(port=0, audiosocket_port=0, audit_db=tmp / "audit.sqlite3",
                                 webrtc_enabled=False, fleet_enabled=False,
                                 events_queue_size=max(1000, events), api_burst=10_000,
                                 api_rate_per_s=10_000))
    await gw.start()
    assert gw.runtime is not None and gw.control is not None
    hdr = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
        await client.post("/api/v1/tenants", json={"name": "bench"}, headers=hdr)
        key = (await client.post("/api/v1/tenants/bench/keys", json={"role": "viewer"},
                                 headers=hdr)).json()["key"]
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_subscribers, args=(
        f"ws://127.0.0.1:{gw.port}/api/v1/events?key={key}", subscribers, events, ready, out))
    proc.start()
    for _ in range(subscribers):
        await asyncio.to_thread(ready.get, True, 60)
    while len(gw.control.hub.subscribers) < subscribers:
        await asyncio.sleep(0.05)
    start = time.time()
    for i in range(events):
        gw.runtime.emit({"type": "bench", "tenant": "bench", "i": i})
        if i % 500 == 499:
            await asyncio.sleep(0)
    emitted = time.time()
    finished = await asyncio.to_thread(out.get, True, 600)
    proc.join(10)
    ws_elapsed = max(finished) - start
    dropped = gw.control.hub.dropped_subscribers

    # webhooks: one tenant webhook on a loopback receiver, action records
    received = 0

    async def hook(request: Any) -> Response:
        nonlocal received
        await request.body()
        received += 1
        return Response(status_code=204)

    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/h", hook, methods=["POST"])]),
                                           host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
        await client.put("/api/v1/tenants/bench/webhook", headers=hdr,
                         json={"url": f"http://127.0.0.1:{port}/h", "secret": "s" * 32})
    hooks = min(events, 2000)
    gw.control.webhooks.max_in_flight = hooks + 1
    start_hooks = time.time()
    for i in range(hooks):
        gw.runtime.emit({"type": "action", "kind": "warn", "tenant": "bench", "i": i})
    while received < hooks and time.time() - start_hooks < 120:
        await asyncio.sleep(0.01)
    hook_elapsed = time.time() - start_hooks
    server.should_exit = True
    await task
    await gw.stop()
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs (shared)",
        "subscribers": subscribers, "events": events,
        "emit_s": round(emitted - start, 3),
        "ws_all_delivered_s": round(ws_elapsed, 3),
        "ws_events_per_s_per_subscriber": round(events / ws_elapsed),
        "ws_messages_per_s_total": round(events * subscribers / ws_elapsed),
        "ws_dropped_subscribers": dropped,
        "webhooks": hooks, "webhooks_delivered": received,
        "webhooks_per_s": round(received / hook_elapsed),
        "note": "gateway, audit log and hub in one process; subscribers in another process on "
                "the same machine; the end-to-end path includes the audit log's 0.2 s batching",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                        "fanout.json")
    args = parser.parse_args()
    result = asyncio.run(run(args.subscribers, args.events))
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
