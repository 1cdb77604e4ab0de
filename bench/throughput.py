"""Throughput of the anti-spoofing models and of the live pipeline.

Part 1, side by side in one run: windows per second per core (ONNX Runtime,
one intra-op thread) for the imported AASIST and AASIST-L and the shipped
model, at batch 1 and 8, with CPU milliseconds per window; and the phase cue
that runs beside the shipped model (numpy, on windows of real speech).

Part 2: how many concurrent live streams one process sustains. Each stream
is a phone call: 20 ms μ-law frames at 8 kHz fed at real-time pace through
the full session path (G.711 decode, resampling, VAD, windowing, batching,
inference with the phase cue, fusion), and again with the CNN alone
(``live_cnn_only``). A load level passes when the p99 verdict lag (window
closed -> verdict out) stays under 300 ms and no window is dropped.

    python -m bench.throughput [--levels 10,25,50,100] [--seconds 15]

Writes bench/results/throughput.json.
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
from pathlib import Path

import numpy as np

from streamguard import AudioChunk, Guard, GuardConfig, Verdict
from streamguard.config import bundled_model_path
from streamguard.detectors.phase_cue import load_beside
from streamguard.inference import OnnxModel
from streamguard.media import decode_file, pcm16_to_float, ulaw_decode, ulaw_encode

REPO = Path(__file__).resolve().parents[1]
SHARED_AASIST = REPO.parent / "shared" / "reference" / "aasist"
RESULTS = REPO / "bench" / "results" / "throughput.json"
SAMPLES = REPO / "gateway" / "samples"
LAG_BUDGET_MS = 300.0


def import_reference_models(directory: Path) -> dict[str, Path]:
    """Imported AASIST / AASIST-L through our import path, when torch and weights exist."""
    try:
        from streamguard.importers.aasist import import_aasist
    except ImportError as exc:
        print(f"skipping AASIST models (import path unavailable: {exc})")
        return {}
    models = {}
    for name, ckpt in (("aasist", "AASIST.pth"), ("aasist-l", "AASIST-L.pth")):
        path = SHARED_AASIST / ckpt
        if path.exists():
            models[name] = import_aasist(path, directory, name=name)
    return models


def time_model(path: Path, batch: int, min_seconds: float = 3.0) -> dict[str, float]:
    model = OnnxModel(path, intra_op_threads=1)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((batch, model.info.input_samples)) * 0.1).astype(np.float32)
    model.run(x)
    runs, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < min_seconds or runs < 3:
        model.run(x)
        runs += 1
    wall = (time.perf_counter() - wall0) / (runs * batch)
    cpu = (time.process_time() - cpu0) / (runs * batch)
    return {"wall_ms_per_window": wall * 1000, "cpu_ms_per_window": cpu * 1000,
            "windows_per_core_second": 1.0 / cpu if cpu > 0 else float("inf")}


def time_phase_cue(min_seconds: float = 3.0) -> dict[str, float]:
    """CPU per 4.04 s window of the phase cue, on the bundled genuine call (16 kHz)."""
    cue = load_beside(bundled_model_path())
    if cue is None:
        raise SystemExit("error: the shipped phase cue is missing")
    x = pcm16_to_float(decode_file(SAMPLES / "genuine_call.wav").pcm)
    n = OnnxModel(bundled_model_path()).info.input_samples
    windows = np.stack([x[s:s + n] for s in range(0, len(x) - n, 16000)])
    cue.window_z(windows[:1])
    runs, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < min_seconds or runs < 3:
        cue.window_z(windows)
        runs += 1
    cpu = (time.process_time() - cpu0) / (runs * len(windows))
    wall = (time.perf_counter() - wall0) / (runs * len(windows))
    return {"version": cue.version, "wall_ms_per_window": wall * 1000,
            "cpu_ms_per_window": cpu * 1000, "windows_per_core_second": 1.0 / cpu}


def call_audio() -> np.ndarray:
    """8 kHz phone audio for the load test: the bundled sample calls, μ-law coded."""
    parts = [decode_file(p, sample_rate=8000).pcm for p in sorted(SAMPLES.glob("*.wav"))]
    return ulaw_decode(ulaw_encode(np.concatenate(parts)))


async def live_load(model: Path, streams: int, seconds: float, audio: np.ndarray,
                    phase_cue: bool = True) -> dict:
    frame = 160
    payloads = [ulaw_encode(audio[i:i + frame]) for i in range(0, len(audio) - frame, frame)]
    lags: list[float] = []
    async with Guard.from_config(GuardConfig(model_path=model, phase_cue=phase_cue)) as guard:
        sessions = [guard.open_session(f"load-{i}") for i in range(streams)]

        async def drain(session) -> None:
            async for event in session.events():
                if isinstance(event, Verdict) and event.latency_ms is not None:
                    lags.append(event.latency_ms)

        readers = [asyncio.create_task(drain(s)) for s in sessions]
        loop = asyncio.get_running_loop()
        ticks = int(seconds / 0.02)
        late = []
        feed_cpu = 0.0
        cpu0, start = time.process_time(), loop.time()
        for tick in range(ticks):
            t0 = time.process_time()
            for i, session in enumerate(sessions):
                payload = payloads[(tick + i * 37) % len(payloads)]
                session.feed_audio(AudioChunk.from_ulaw(session.stream_id, payload,
                                                        pts=tick * frame))
            feed_cpu += time.process_time() - t0
            due = start + (tick + 1) * 0.02
            late.append(max(0.0, loop.time() - due))
            await asyncio.sleep(max(0.0, due - loop.time()))
        cpu = time.process_time() - cpu0
        for s in sessions:
            await s.close()
        await asyncio.gather(*readers)
        stats = guard.batcher.stats
    lag = np.array(lags) if lags else np.array([np.inf])
    return {
        "streams": streams, "seconds": seconds, "verdicts": len(lags),
        "dropped_windows": stats.dropped,
        "lag_ms_p50": float(np.percentile(lag, 50)), "lag_ms_p99": float(np.percentile(lag, 99)),
        "feeder_late_ms_p99": float(np.percentile(np.array(late) * 1000, 99)),
        "cpu_ms_per_stream_second": cpu * 1000 / (streams * seconds),
        "media_path_us_per_frame": feed_cpu * 1e6 / (ticks * streams),
        "batch_size_counts": stats.batch_size_counts,
        "passed": bool(stats.dropped == 0 and np.percentile(lag, 99) < LAG_BUDGET_MS),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="10,25,50,75,100")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--skip-aasist", action="store_true")
    args = parser.parse_args()

    results: dict = {"env": {"python": sys.version.split()[0], "machine": platform.machine(),
                             "cpus": os.cpu_count(), "note": "shared, noisy 2-core machine"}}
    with tempfile.TemporaryDirectory() as tmp:
        models = {} if args.skip_aasist else import_reference_models(Path(tmp))
        models["shipped"] = bundled_model_path()
        results["models"] = {}
        print(f"{'model':10s} {'batch':>5s} {'cpu ms/window':>14s} {'windows/core/s':>15s}")
        for name, path in models.items():
            version = OnnxModel(path).info.version
            entry: dict = {"version": version}
            for batch in (1, 8):
                timing = time_model(path, batch)
                entry[f"batch{batch}"] = timing
                print(f"{name:10s} {batch:5d} {timing['cpu_ms_per_window']:14.2f} "
                      f"{timing['windows_per_core_second']:15.1f}")
            results["models"][name] = entry
    cue = time_phase_cue()
    results["models"]["phase_cue"] = cue
    print(f"{'phase cue':10s} {'':5s} {cue['cpu_ms_per_window']:14.2f} "
          f"{cue['windows_per_core_second']:15.1f}")

    audio = call_audio()
    for key, phase_cue in (("live", True), ("live_cnn_only", False)):
        results[key] = []
        print(f"\n{'streams':>7s} {'p50 lag':>8s} {'p99 lag':>8s} {'dropped':>7s} "
              f"{'cpu ms/stream-s':>15s} {'media us/frame':>14s} pass  "
              f"({'with' if phase_cue else 'without'} the phase cue)")
        for level in (int(v) for v in args.levels.split(",")):
            row = asyncio.run(live_load(bundled_model_path(), level, args.seconds, audio,
                                        phase_cue))
            results[key].append(row)
            print(f"{level:7d} {row['lag_ms_p50']:8.1f} {row['lag_ms_p99']:8.1f} "
                  f"{row['dropped_windows']:7d} {row['cpu_ms_per_stream_second']:15.2f} "
                  f"{row['media_path_us_per_frame']:14.1f} {row['passed']}")
            if not row["passed"]:
                break
        passed = [r["streams"] for r in results[key] if r["passed"]]
        results[f"max_streams_sustained{key[4:]}"] = max(passed) if passed else 0
    print(f"\nmax concurrent live streams sustained (p99 lag < {LAG_BUDGET_MS:.0f} ms, "
          f"no drops): {results['max_streams_sustained']} with the phase cue, "
          f"{results['max_streams_sustained_cnn_only']} with the CNN alone")
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
