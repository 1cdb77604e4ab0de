"""Audit log throughput: appends per second, the async sink, and ``verify`` time.

Records are realistic verdict dicts (what ``Verdict.to_dict()`` produces,
~450 bytes of canonical JSON each). Measured:

- ``append``: ``AuditLog.append`` in a loop, committing every ``batch_size``
  entries (the default 256) and once at the end;
- ``append_commit_each``: the same with a commit per entry (batch_size 1), the
  cost batching avoids;
- ``sink``: ``gateway.audit_sink.AuditSink.emit`` on an event loop with the
  background flusher (0.2 s interval) until every record is committed;
- ``sink_paced``: emits at a steady 500/s (5x the ~100 verdicts/s of 100
  calls) for 6 s: ``emit()`` call time and how late the event loop wakes up
  while the sink's worker thread appends and commits (GIL contention);
- ``verify``: ``AuditLog.verify`` over the whole log; with ``--n 1000000`` this is
  the issue's "verify time for 1M records" (the default).

    python -m bench.audit [--n 1000000]

Writes bench/results/audit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.audit_sink import AuditSink
from streamguard.audit import AuditLog
from streamguard.events import State, Verdict

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "audit.json"


def records(n: int) -> list[dict[str, Any]]:
    states = list(State)
    return [Verdict(f"call-{i % 100:03d}", f"tenant-{i % 3}", i // 100, i * 0.01, i * 0.01 + 4.04,
                    1.234567 + i % 7, 0.1 + (i % 9) / 10, 0.2, (0.11, 0.37),
                    states[i % len(states)], states[(i + 1) % len(states)], i // 100 + 1,
                    "voice_clone", "vc-cnn-1.0.0", speech_ratio=0.8,
                    latency_ms=41.5).to_dict() for i in range(n)]


def time_append(path: Path, recs: list[dict[str, Any]], batch_size: int,
                n: int | None = None) -> dict[str, float]:
    """Append ``n`` records (cycling through ``recs``) and commit."""
    n = len(recs) if n is None else n
    log = AuditLog(path, batch_size=batch_size, max_delay=3600)
    start = time.perf_counter()
    for i in range(n):
        log.append(recs[i % len(recs)])
    log.flush()
    wall = time.perf_counter() - start
    log.close()
    return {"n": n, "batch_size": batch_size, "seconds": round(wall, 3),
            "appends_per_s": round(n / wall)}


async def time_sink(path: Path, recs: list[dict[str, Any]]) -> dict[str, float]:
    sink = AuditSink(path, interval=0.2)
    sink.start()
    start = time.perf_counter()
    emit_max = 0.0
    for i, r in enumerate(recs):
        t0 = time.perf_counter()
        sink.emit(r)
        emit_max = max(emit_max, time.perf_counter() - t0)
        if i % 1000 == 0:
            await asyncio.sleep(0)  # let the loop run, as a live gateway would
    await sink.close()
    wall = time.perf_counter() - start
    return {"n": len(recs), "seconds": round(wall, 3), "records_per_s": round(len(recs) / wall),
            "emit_max_us": round(emit_max * 1e6, 1)}


async def time_sink_paced(path: Path, recs: list[dict[str, Any]], rate: float,
                          seconds: float) -> dict[str, float]:
    """Emit at a steady ``rate``/s: emit() call time and event-loop lag while the sink works."""
    sink = AuditSink(path, interval=0.2)
    sink.start()
    emit_us: list[float] = []
    lag_ms: list[float] = []
    period = 1 / rate
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        t0 = time.perf_counter()
        sink.emit(recs[i % len(recs)])
        emit_us.append((time.perf_counter() - t0) * 1e6)
        due = start + (i + 1) * period
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        lag_ms.append(max(0.0, time.perf_counter() - due) * 1e3)
    await sink.close()
    emit_us.sort()
    lag_ms.sort()

    def q(xs: list[float], p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 2)

    return {"rate_per_s": rate, "n": len(emit_us), "emit_us_p50": q(emit_us, 0.5),
            "emit_us_p99": q(emit_us, 0.99), "emit_us_max": q(emit_us, 1.0),
            "loop_lag_ms_p50": q(lag_ms, 0.5), "loop_lag_ms_p99": q(lag_ms, 0.99),
            "written": sink.written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="records in the big log")
    args = parser.parse_args()
    small = records(20_000)
    out: dict[str, Any] = {
        "bench": "audit",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0], "note": "shared, noisy machine"},
        "record_bytes_mean": None,
    }
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        out["append_commit_each"] = time_append(d / "each.sqlite3", small[:2000], 1)
        out["sink"] = asyncio.run(time_sink(d / "sink.sqlite3", small))
        out["sink_paced"] = asyncio.run(time_sink_paced(d / "paced.sqlite3", small, 500, 6))
        print(json.dumps({k: out[k] for k in ("append_commit_each", "sink", "sink_paced")}),
              flush=True)
        out["append"] = time_append(d / "big.sqlite3", small, 256, args.n)
        log = AuditLog(d / "big.sqlite3", readonly=True)
        out["record_bytes_mean"] = round(
            sum(len(r[0]) for r in log._db.execute("SELECT body FROM entries LIMIT 1000"))
            / 1000)
        start = time.perf_counter()
        result = log.verify()
        wall = time.perf_counter() - start
        assert result.ok, result.message()
        log.close()
        size = sum(f.stat().st_size for f in d.glob("big.sqlite3*"))
        out["verify"] = {"n": args.n, "seconds": round(wall, 3),
                         "entries_per_s": round(args.n / wall),
                         "seconds_per_million_extrapolated": round(wall * 1e6 / args.n, 1)}
        out["db_bytes_per_entry"] = round(size / args.n)
    print(json.dumps(out, indent=1))
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
