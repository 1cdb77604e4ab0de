"""``streamguard demo``: sample calls replayed to a live gateway over Twilio Media Streams.

The demo starts the same gateway ``streamguard serve`` runs (on free loopback
ports), then plays each file as a Twilio ``<Stream>`` — 20 ms base64 μ-law
frames at real-time pace, all calls at once — and prints every verdict and
action as the gateway emits it, plus what the far end hears back (warning
prompt, hold audio). It is what an operator's console shows during a call.
"""

from __future__ import annotations

import asyncio
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.replay import replay_twilio
from gateway.server import Gateway
from gateway.settings import GatewaySettings
from streamguard import GuardConfig, MediaError
from streamguard.media import decode_file

SAMPLES = ("genuine_call.wav", "synthetic_call.wav")


def bundled_samples() -> list[str]:
    base = resources.files("gateway") / "samples"
    return [str(base / name) for name in SAMPLES]


def format_record(name: str, record: dict[str, Any]) -> str | None:
    """One console line for a gateway record, or None for records not worth a line."""
    kind = record.get("type")
    if kind == "notice":
        return f"[{record['at']:6.1f}s] {name:<22} notice {record['kind']}: {record['message']}"
    if kind == "action":
        text = f" — {record['text']}" if record.get("text") else ""
        return (f"[{record['at']:6.1f}s] {name:<22} >> ACTION {record['kind'].upper()} "
                f"({record['reason']}; rule {record['rule']}){text}")
    if kind != "verdict":
        return None
    state = record["state"]
    if record["final"]:
        if record["probability"] is None:
            return f"== {name:<22} FINAL {state.upper()} (not enough speech)"
        low, high = record["interval"]
        return (f"== {name:<22} FINAL {state.upper():<10} P(synthetic)="
                f"{record['probability']:.2f} [{low:.2f}, {high:.2f}] over "
                f"{record['windows_scored']} windows, model {record['model_version']}")
    low, high = record["interval"]
    change = f"  <- was {record['previous_state']}" if record["changed"] else ""
    return (f"[{record['end']:6.1f}s] {name:<22} {state:<10} "
            f"p={record['probability']:.2f} [{low:.2f}, {high:.2f}]  "
            f"window p={record['window_probability']:.2f}  "
            f"lag {record['latency_ms']:.0f} ms{change}")


class ConsoleSink:
    """Prints gateway records, naming each call after the file it replays."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def emit(self, record: dict[str, Any]) -> None:
        if record.get("type") == "call_started":
            self.names[record["call_id"]] = record["parameters"].get("demo_file", "call")
            return
        name = self.names.get(str(record.get("call_id")), str(record.get("call_id")))
        line = format_record(name, record)
        if line is not None:
            print(line, flush=True)


async def run_demo(files: list[str], config: GuardConfig, *, speed: float = 1.0,
                   audit_db: Path | None = None) -> int:
    paths = files or bundled_samples()
    calls = []
    failed = 0
    for path in paths:
        try:
            calls.append((Path(path).stem, decode_file(path, sample_rate=8000).pcm))
        except MediaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    gateway = Gateway(GatewaySettings(port=0, audiosocket_port=0, guard=config,
                                      audit_db=audit_db), sinks=[ConsoleSink()])
    await gateway.start()
    try:
        assert gateway.runtime is not None
        print(f"StreamGuard demo: gateway on 127.0.0.1:{gateway.port}, model "
              f"{gateway.runtime.guard.detector.version}; {len(calls)} call(s) over Twilio "
              f"Media Streams at {speed:g}x real time", flush=True)
        url = f"ws://127.0.0.1:{gateway.port}/media/twilio"

        def far_end(name: str) -> Any:
            """What the Twilio side sees come back: prompt audio and action marks."""
            frames = 0

            def on_message(message: dict[str, Any]) -> None:
                nonlocal frames
                if message.get("event") == "media":
                    frames += 1
                elif message.get("event") == "mark":
                    print(f"         {name:<22} << {message['mark']['name']} reached the call; "
                          f"{frames * 0.02:.1f} s of prompt audio played back so far",
                          flush=True)
            return on_message

        await asyncio.gather(*(
            replay_twilio(url, pcm, speed=speed, parameters={"demo_file": name},
                          on_message=far_end(name))
            for name, pcm in calls))
    finally:
        await gateway.stop()
    if audit_db is not None:
        print(f"every verdict and action is in the audit log {audit_db} "
              f"(check it: streamguard audit verify --db {audit_db})", flush=True)
    return 1 if failed else 0
