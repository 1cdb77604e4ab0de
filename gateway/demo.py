"""``streamguard demo``: sample calls played through the live session API.

Each file becomes a call fed in 20 ms frames at real-time pace (or faster
with ``--speed``), all calls at once, and every verdict is printed as it
arrives, so you see what an operator's console would show during a call.
"""

from __future__ import annotations

import asyncio
import sys
from importlib import resources
from pathlib import Path

from streamguard import (
    Action,
    AudioChunk,
    Event,
    Guard,
    GuardConfig,
    MediaError,
    Notice,
    Session,
)
from streamguard.media import decode_file

FRAME_SECONDS = 0.02
SAMPLES = ("genuine_call.wav", "synthetic_call.wav")


def bundled_samples() -> list[str]:
    base = resources.files("gateway") / "samples"
    return [str(base / name) for name in SAMPLES]


def format_event(name: str, event: Event) -> str:
    if isinstance(event, Notice):
        return f"[{event.at:6.1f}s] {name:<22} notice {event.kind}: {event.message}"
    if isinstance(event, Action):
        text = f" — {event.text}" if event.text else ""
        return (f"[{event.at:6.1f}s] {name:<22} >> ACTION {event.kind.value.upper()} "
                f"({event.reason}; rule {event.rule}){text}")
    if event.final:
        if event.probability is None or event.interval is None:
            return f"== {name:<22} FINAL {event.state.value.upper()} (not enough speech)"
        low, high = event.interval
        return (f"== {name:<22} FINAL {event.state.value.upper():<10} P(synthetic)="
                f"{event.probability:.2f} [{low:.2f}, {high:.2f}] over "
                f"{event.windows_scored} windows, model {event.model_version}")
    assert event.probability is not None and event.interval is not None
    low, high = event.interval
    change = f"  <- was {event.previous_state.value}" if event.changed else ""
    return (f"[{event.end:6.1f}s] {name:<22} {event.state.value:<10} "
            f"p={event.probability:.2f} [{low:.2f}, {high:.2f}]  "
            f"window p={event.window_probability:.2f}{change}")


async def play(session: Session, path: str, speed: float) -> None:
    audio = decode_file(path, sample_rate=8000)  # a phone line: 8 kHz like Twilio
    frame = int(audio.sample_rate * FRAME_SECONDS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for index, start in enumerate(range(0, len(audio.pcm), frame)):
        session.feed_audio(AudioChunk(session.stream_id, audio.pcm[start:start + frame],
                                      audio.sample_rate, pts=start))
        due = started + (index + 1) * FRAME_SECONDS / speed
        await asyncio.sleep(max(0.0, due - loop.time()))
    await session.close()


async def show(session: Session, name: str) -> None:
    async for event in session.events():
        print(format_event(name, event), flush=True)


async def run_demo(files: list[str], config: GuardConfig, *, speed: float = 1.0) -> int:
    paths = files or bundled_samples()
    print(f"StreamGuard demo: {len(paths)} call(s) at {speed:g}x real time", flush=True)
    async with Guard.from_config(config) as guard:
        print(f"model {guard.detector.info.name} {guard.detector.version}", flush=True)
        tasks = []
        for index, path in enumerate(paths):
            name = Path(path).stem
            session = guard.open_session(f"demo-{index}", kind="call", meta={"file": path})
            tasks.append(asyncio.gather(play(session, path, speed), show(session, name)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    for error in failed:
        if isinstance(error, MediaError):
            print(f"error: {error}", file=sys.stderr)
        else:
            raise error
    return 1 if failed else 0
