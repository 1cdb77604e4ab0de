"""Added per-frame latency of the inline WebRTC relay, side by side in one run.

Three paths carry identical numbered video frames on the same clock, over
loopback, in one process:

- ``direct``: aiortc publisher → aiortc receiver (the baseline);
- ``plain_forward``: publisher → an aiortc peer that forwards decoded frames
  with aiortc's ``MediaRelay`` → receiver (what any decoding SFU hop costs:
  one more VP8 decode + encode and jitter buffer);
- ``guarded``: publisher → gateway ``POST /whip`` → guarded relay track →
  ``POST /whep`` viewer (StreamGuard's inline relay, analysis attached).

The middle hop of both relayed paths runs in this process's event loop, next
to the publishers and receivers; on a busy 2-core machine the loop's
scheduling delay dominates the tails, so the numbers that isolate the relay
are ``relay_processing`` (its own work per frame) and
``added_guarded_vs_plain_forward`` (the same hop with and without the guard).

Each frame carries its index in a row of black/white blocks, so a received
frame is matched to its send time whatever happens to RTP timestamps. Per
frame the bench reports end-to-end latency per path and the *added* latency
(path minus ``direct`` for the same frame), p50/p99, plus the relay track's
own hand-off time (hub received the decoded frame → relay track returned it
to the viewer's encoder), with no action active (pass-through) and with a
warning banner drawn on every frame.

    python -m bench.relay [--seconds 15] [--fps 30] [--width 320 --height 240]

Writes bench/results/relay.json. Target (ARCHITECTURE.md): < 2 ms p99 added
by the relay itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.server import Gateway
from gateway.settings import GatewaySettings
from gateway.webrtc.peer import host_addresses
from gateway.webrtc.relay import GuardedVideoTrack

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "relay.json"
BITS = 12
BLOCK = 16


class NumberedTrack(MediaStreamTrack):
    """Frames whose index is drawn as BITS blocks; send time recorded per index."""

    kind = "video"

    def __init__(self, clock_start: float, fps: int, width: int, height: int,
                 frames: int) -> None:
        super().__init__()
        self.start, self.fps, self.frames = clock_start, fps, frames
        self.width, self.height = width, height
        self.sent: dict[int, float] = {}
        self._n = 0
        self._base = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
        self._base[:height] = 120
        yy, xx = np.mgrid[0:height, 0:width]
        self._base[:height] = (60 + (xx + yy) % 120).astype(np.uint8)  # some texture

    async def recv(self) -> av.VideoFrame:
        if self._n >= self.frames or self.readyState != "live":
            raise MediaStreamError
        wait = self.start + self._n / self.fps - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        image = self._base.copy()
        for bit in range(BITS):
            value = 235 if (self._n >> bit) & 1 else 16
            image[BLOCK * 2:BLOCK * 3, bit * BLOCK:(bit + 1) * BLOCK] = value
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = int(self._n * 90000 / self.fps)
        frame.time_base = Fraction(1, 90000)
        self.sent[self._n] = time.perf_counter()
        self._n += 1
        return frame


def read_index(frame: av.VideoFrame) -> int:
    y = frame.to_ndarray(format="gray")
    row = y[BLOCK * 2 + 4:BLOCK * 3 - 4]
    index = 0
    for bit in range(BITS):
        if row[:, bit * BLOCK + 4:(bit + 1) * BLOCK - 4].mean() > 128:
            index |= 1 << bit
    return index


async def receive(track: MediaStreamTrack, got: dict[int, float]) -> None:
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        now = time.perf_counter()
        got.setdefault(read_index(frame), now)


def loopback() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    with host_addresses(["127.0.0.1"]):
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


def stats(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ms = np.asarray(values) * 1000.0
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3)}


async def run(seconds: float, fps: int, width: int, height: int,
              banner_seconds: float) -> dict[str, Any]:
    frames = int((seconds + banner_seconds) * fps)
    start = time.perf_counter() + 2.5  # all three paths connect first
    tracks = {name: NumberedTrack(start, fps, width, height, frames)
              for name in ("direct", "plain_forward", "guarded")}
    got: dict[str, dict[int, float]] = {name: {} for name in tracks}
    tasks: list[asyncio.Task[None]] = []
    pcs: list[RTCPeerConnection] = []

    def sink_track(pc: RTCPeerConnection, name: str) -> None:
        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            tasks.append(asyncio.ensure_future(receive(track, got[name])))

    # direct
    pub, sub = loopback(), loopback()
    pcs += [pub, sub]
    pub.addTransceiver(tracks["direct"], direction="sendonly")
    sink_track(sub, "direct")
    await connect(pub, sub)

    # plain aiortc forwarder in the middle
    pub2, mid_in, mid_out, sub2 = loopback(), loopback(), loopback(), loopback()
    pcs += [pub2, mid_in, mid_out, sub2]
    relay = MediaRelay()
    forwarded: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    mid_in.on("track", lambda t: forwarded.done() or forwarded.set_result(t))
    pub2.addTransceiver(tracks["plain_forward"], direction="sendonly")
    await connect(pub2, mid_in)
    mid_out.addTransceiver(relay.subscribe(await forwarded, buffered=False),
                           direction="sendonly")
    sink_track(sub2, "plain_forward")
    await connect(mid_out, sub2)

    # StreamGuard gateway: WHIP in, WHEP out
    gateway = Gateway(GatewaySettings(port=0, audiosocket_port=0))
    await gateway.start()
    edge = gateway.webrtc
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as client:
        pub3 = loopback()
        pcs.append(pub3)
        pub3.addTransceiver(tracks["guarded"], direction="sendonly")
        with host_addresses(["127.0.0.1"]):
            await pub3.setLocalDescription(await pub3.createOffer())
        r = await client.post("/whip", content=pub3.localDescription.sdp,
                              headers={"Content-Type": "application/sdp"})
        r.raise_for_status()
        await pub3.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        pid = r.headers["location"].rsplit("/", 1)[1]
        participant = edge.participants[pid]
        while "video" not in participant.hubs:
            await asyncio.sleep(0.01)
        viewer = loopback()
        pcs.append(viewer)
        viewer.addTransceiver("video", direction="recvonly")
        sink_track(viewer, "guarded")
        with host_addresses(["127.0.0.1"]):
            await viewer.setLocalDescription(await viewer.createOffer())
        r = await client.post(f"/whep/{pid}", content=viewer.localDescription.sdp,
                              headers={"Content-Type": "application/sdp"})
        r.raise_for_status()
        await viewer.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        viewer_pc = next(iter(participant.viewers.values()))
        guarded = next(s.track for s in viewer_pc.getSenders()
                       if isinstance(s.track, GuardedVideoTrack))
        handoff: dict[str, list[float]] = {"passthrough": [], "banner": []}
        work: dict[str, list[float]] = {"passthrough": [], "banner": []}
        guarded.latencies, guarded.processing = handoff["passthrough"], work["passthrough"]

        # Phase 1: pass-through; phase 2: a warning banner on every frame.
        await asyncio.sleep(max(0.0, start - time.perf_counter()) + seconds)
        participant.relay.banner_seconds = banner_seconds + 5
        participant.relay.apply("warn", "WARNING: this participant may be synthetic")
        banner_from = int((time.perf_counter() - start) * fps) + 1
        guarded.latencies, guarded.processing = handoff["banner"], work["banner"]
        await asyncio.sleep(banner_seconds + 1.0)
        for pc in pcs:
            await pc.close()
        await gateway.stop()
    for task in tasks:
        task.cancel()

    def latencies(name: str, indices: range) -> dict[int, float]:
        sent, received = tracks[name].sent, got[name]
        return {i: received[i] - sent[i] for i in indices if i in received and i in sent}

    skip = 2 * fps  # first two seconds: keyframes, bandwidth estimation settling
    phases = {"passthrough": range(skip, banner_from - fps // 2),
              "banner": range(banner_from + fps // 2, frames)}
    out: dict[str, Any] = {}
    for phase, indices in phases.items():
        paths = {name: latencies(name, indices) for name in tracks}
        direct = paths["direct"]
        result: dict[str, Any] = {name: stats(list(v.values())) for name, v in paths.items()}
        for name in ("plain_forward", "guarded"):
            common = [paths[name][i] - direct[i] for i in paths[name] if i in direct]
            result[f"added_{name}_vs_direct"] = stats(common)
        plain = paths["plain_forward"]
        common = [paths["guarded"][i] - plain[i] for i in paths["guarded"] if i in plain]
        result["added_guarded_vs_plain_forward"] = stats(common)
        result["relay_handoff"] = stats(handoff[phase])
        result["relay_processing"] = stats(work[phase])
        result["frames_sent"] = len(indices)
        result["frames_received"] = {name: len(v) for name, v in paths.items()}
        out[phase] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="pass-through phase")
    parser.add_argument("--banner-seconds", type=float, default=8.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args()
    phases = asyncio.run(run(args.seconds, args.fps, args.width, args.height,
                             args.banner_seconds))
    result = {
        "bench": "relay",
        "what": "per-frame video latency over loopback, three paths side by side in one "
                "process: direct aiortc->aiortc, via a plain aiortc MediaRelay forwarder, "
                "via the StreamGuard gateway (WHIP in, guarded WHEP relay out)",
        "video": {"width": args.width, "height": args.height, "fps": args.fps,
                  "codec": "VP8"},
        "target": "< 2 ms p99 added by the relay (ARCHITECTURE.md latency budget)",
        "phases": phases,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "loadavg_1m": round(os.getloadavg()[0], 2)},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
