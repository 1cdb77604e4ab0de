"""Concurrent telephony calls against one gateway process, over loopback.

Starts ``streamguard serve --events-json`` as a separate process and drives
N simulated Twilio Media Streams calls at real-time pace (20 ms base64
μ-law frames, call starts spread over one hop so windows do not all close at
once). Per load level it reports:

- verdict lag: wall time from the moment the last frame of a window was sent
  to the moment its verdict line came out of the gateway (p50 / p99),
- inbound frames the gateway did not receive, windows it dropped,
- gateway CPU per call (ms of CPU per second of call, % of one core),
- whether the client kept real-time pace (so a failure is the gateway's).

A level passes with p99 lag < 500 ms, zero lost frames and zero dropped
windows; the knee is the largest passing level.

    python -m bench.calls [--levels 25,50,100,150] [--seconds 30]

Writes bench/results/calls.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from streamguard.media import decode_file, ulaw_encode

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
SAMPLES = REPO / "gateway" / "samples"
RESULTS = REPO / "bench" / "results" / "calls.json"
LAG_BUDGET_MS = 500.0
FRAME = 160  # 20 ms at 8 kHz


def call_pool(seconds: float, count: int = 8) -> list[np.ndarray]:
    """8 kHz calls of ``seconds``: shared-corpus speech when present, else the bundled calls."""
    files = sorted(SPEECH.rglob("*.flac")) + sorted(SPEECH.rglob("*.wav"))
    if not files:
        files = sorted(SAMPLES.glob("*.wav"))
    rng = np.random.default_rng(0)
    clips = [decode_file(str(f), sample_rate=8000).pcm for f in files]
    need = int(seconds * 8000)
    pool = []
    for _ in range(count):
        parts, total = [], 0
        while total < need:
            clip = clips[int(rng.integers(len(clips)))]
            parts.append(clip)
            total += len(clip)
        pool.append(np.concatenate(parts)[:need])
    return pool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Call:
    """One simulated Twilio call: every message pre-encoded, so the client costs little."""

    def __init__(self, index: int, pcm8k: np.ndarray) -> None:
        sid = f"MZ{index:032x}"
        self.index = index
        self.head = [
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid,
                        "start": {"streamSid": sid, "callSid": f"CA{index:032x}",
                                  "accountSid": "AC" + "0" * 32, "tracks": ["inbound"],
                                  "customParameters": {"bench_call": str(index)},
                                  "mediaFormat": {"encoding": "audio/x-mulaw",
                                                  "sampleRate": 8000, "channels": 1}}}),
        ]
        self.frames = [
            json.dumps({"event": "media", "sequenceNumber": str(n + 2), "streamSid": sid,
                        "media": {"track": "inbound", "chunk": str(n + 1),
                                  "timestamp": str(n * 20),
                                  "payload": base64.b64encode(
                                      ulaw_encode(pcm8k[n * FRAME:(n + 1) * FRAME])).decode()}})
            for n in range(len(pcm8k) // FRAME)]
        self.stop = json.dumps({"event": "stop", "sequenceNumber": str(len(self.frames) + 2),
                                "streamSid": sid, "stop": {"callSid": f"CA{index:032x}"}})
        self.sent_at = np.zeros(len(self.frames))
        self.ws: Any = None


async def drive(url: str, calls: list[Call]) -> int:
    """Real-time pacing from one ticker: every 20 ms each live call sends its next frame.

    Call ``i`` starts ``i / len(calls)`` of a second late so windows close spread
    over the hop. Returns how many ticks the client itself ran late (> 20 ms).
    """
    import websockets

    async def drain(ws: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                pass

    readers = []
    for call in calls:
        call.ws = await websockets.connect(url, compression=None, max_size=2**20)
        for message in call.head:
            await call.ws.send(message)
        readers.append(asyncio.create_task(drain(call.ws)))
    loop = asyncio.get_running_loop()
    offsets = [int(i / len(calls) / 0.02) for i in range(len(calls))]
    ticks = max(o + len(c.frames) for o, c in zip(offsets, calls, strict=True))
    late = 0
    start = loop.time()
    for tick in range(ticks):
        now = loop.time()
        for call, offset in zip(calls, offsets, strict=True):
            n = tick - offset
            if 0 <= n < len(call.frames):
                await call.ws.send(call.frames[n])
                call.sent_at[n] = now
            elif n == len(call.frames):
                await call.ws.send(call.stop)
        due = start + (tick + 1) * 0.02
        if loop.time() > due + 0.02:
            late += 1
        await asyncio.sleep(max(0.0, due - loop.time()))
    for call in calls:
        with contextlib.suppress(websockets.ConnectionClosed):
            await call.ws.send(call.stop)
    await asyncio.sleep(1.0)  # final verdicts
    for call in calls:
        await call.ws.close()
    await asyncio.gather(*readers)
    return late


async def run_level(count: int, seconds: float, pool: list[np.ndarray],
                    fleet: bool = False) -> dict[str, Any]:
    port, tcp = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from gateway.cli import main; raise SystemExit(main())",
        "serve", "--port", str(port), "--audiosocket-port", str(tcp), "--events-json",
        "--no-audit", *(() if fleet else ("--no-fleet",)),
        stdout=asyncio.subprocess.PIPE, limit=2**20)
    loop = asyncio.get_running_loop()
    records: list[tuple[float, dict[str, Any]]] = []

    async def read_events() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            records.append((loop.time(), json.loads(line)))

    reader = asyncio.create_task(read_events())
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    calls = [Call(i, pool[i % len(pool)]) for i in range(count)]
    cpu0 = cpu_seconds(proc.pid)
    late_ticks = await drive(f"ws://127.0.0.1:{port}/media/twilio", calls)
    cpu = cpu_seconds(proc.pid) - cpu0
    proc.terminate()
    await proc.wait()
    await reader

    by_id = {r["call_id"]: calls[int(r["parameters"]["bench_call"])]
             for _, r in records if r.get("type") == "call_started"}
    lags, dropped_windows, received = [], 0, 0
    for at, record in records:
        kind = record.get("type")
        if kind == "verdict" and not record["final"]:
            call = by_id[record["call_id"]]
            # The window closed when the frame holding its last sample was sent.
            last = min(len(call.frames) - 1, int(np.ceil(record["end"] / 0.02)) - 1)
            lags.append((at - call.sent_at[last]) * 1000)
        elif kind == "notice" and record["kind"] == "window_dropped":
            dropped_windows += 1
        elif kind == "call_ended":
            received += record["frames_received"]
    sent = sum(len(c.frames) for c in calls)
    lag = np.array(lags) if lags else np.array([np.inf])
    out = {
        "calls": count, "seconds": seconds, "verdicts": len(lags),
        "lag_ms_p50": float(np.percentile(lag, 50)), "lag_ms_p99": float(np.percentile(lag, 99)),
        "lag_ms_max": float(lag.max()),
        "frames_sent": sent, "frames_lost": sent - received, "dropped_windows": dropped_windows,
        "client_late_ticks": late_ticks,
        "gateway_cpu_ms_per_call_second": cpu * 1000 / (count * seconds),
        "gateway_core_percent_per_call": cpu * 100 / (count * seconds),
        "gateway_cpu_percent_total": cpu * 100 / seconds,
    }
    out["passed"] = bool(out["lag_ms_p99"] < LAG_BUDGET_MS and out["frames_lost"] == 0
                         and dropped_windows == 0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="25,50,100,150")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fleet", action="store_true",
                        help="also run the in-memory fleet (per-call voiceprints and "
                             "fingerprints for campaign detection): about 45 ms of CPU per "
                             "call-second more")
    args = parser.parse_args()
    pool = call_pool(args.seconds)
    levels = []
    print("calls  p50 lag  p99 lag  max lag  lost frames  dropped win  late ticks  "
          "cpu ms/call-s  pass")
    for calls in (int(x) for x in args.levels.split(",")):
        row = asyncio.run(run_level(calls, args.seconds, pool, fleet=args.fleet))
        levels.append(row)
        print(f"{calls:5d} {row['lag_ms_p50']:8.1f} {row['lag_ms_p99']:8.1f} "
              f"{row['lag_ms_max']:8.1f} {row['frames_lost']:12d} {row['dropped_windows']:12d} "
              f"{row['client_late_ticks']:12d} {row['gateway_cpu_ms_per_call_second']:14.2f}  "
              f"{row['passed']}", flush=True)
    passing = [row["calls"] for row in levels if row["passed"]]
    knee = max(passing) if passing else 0
    print(f"knee: {knee} concurrent calls pass (p99 lag < {LAG_BUDGET_MS:.0f} ms, "
          f"no lost frames or dropped windows)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "bench": "calls", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "lag_budget_ms": LAG_BUDGET_MS, "fleet": args.fleet, "levels": levels,
        "knee_calls": knee,
    }, indent=2))
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
