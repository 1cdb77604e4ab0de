"""One WHIP publisher: its peer connection, core session, video hook and relay.

A participant reuses the telephony :class:`~gateway.bridge.CallBridge` with a
single leg, so its verdict and action records are the telephony ones
(``call_id`` = participant id, ``protocol="whip"``, ``leg="participant"``).
The bridge's prompt playback is 8 kHz telephony audio; here it goes nowhere
(:class:`RelayControl` ignores it) and the relay mixes its own 48 kHz prompt
into the viewers' audio instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import aioice.ice
import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from gateway.bridge import CallBridge
from gateway.webrtc.relay import Frame, RelayState, TrackHub
from streamguard.media.frames import VideoFrame
from streamguard.video import VideoAnalyser, VideoScorer, WindowedVideoScorer

log = logging.getLogger("streamguard.gateway")

LEG = "participant"
PROTOCOL = "whip"
RTP_WRAP = 1 << 32

# ---------------------------------------------------------------------------
# ICE host candidates on chosen addresses only.
#
# aioice gathers host candidates from every interface except loopback, through
# the module-level ``aioice.ice.get_host_addresses``. The wrapper below asks a
# context variable first, so the gateway's peers gather on the configured
# addresses (127.0.0.1 in tests, the media interface in production) while any
# other aiortc user in the process keeps aioice's own behaviour.
# ---------------------------------------------------------------------------

_HOST_ADDRESSES: ContextVar[tuple[str, ...] | None] = ContextVar("sg_host_addresses",
                                                                 default=None)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _HOST_ADDRESSES.get()
    if chosen is None:
        return _original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [a for a in chosen if (use_ipv6 if ":" in a else use_ipv4)]


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Within this block, ICE gathering (``setLocalDescription``) offers host
    candidates on ``addresses`` only; an empty sequence means every interface."""
    aioice.ice.get_host_addresses = _get_host_addresses
    token = _HOST_ADDRESSES.set(tuple(addresses) or None)
    try:
        yield
    finally:
        _HOST_ADDRESSES.reset(token)


def rtc_configuration(ice_servers: Sequence[str]) -> RTCConfiguration:
    """No STUN unless configured: aiortc would otherwise ask a public server."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers])


class RelayControl:
    """``CallControl`` for a WebRTC participant: actions steer the relay."""

    playback_chunk_seconds = 1.0  # the bridge's 8 kHz playback is dropped; wake up rarely

    def __init__(self, relay: RelayState) -> None:
        self.relay = relay

    async def send_audio(self, pcm: npt.NDArray[np.int16]) -> None:
        return None

    async def stop_audio(self) -> None:
        return None

    async def report(self, record: dict[str, Any]) -> None:
        if record.get("type") == "action":
            self.relay.apply(str(record["kind"]), record.get("text"))


class _Clock:
    """Rebases a track's RTP-derived pts (random origin, 32-bit wrap) to 0."""

    def __init__(self) -> None:
        self._origin: int | None = None
        self._last = 0
        self._wraps = 0

    def ticks(self, pts: int) -> int:
        if self._origin is None:
            self._origin = pts
        rel = (pts - self._origin) % RTP_WRAP
        if rel < self._last and self._last - rel > RTP_WRAP // 2:
            self._wraps += 1
        self._last = rel
        return rel + self._wraps * RTP_WRAP


class Participant:
    """A published stream: analysis always (sidecar), relay to viewers on demand."""

    def __init__(self, pid: str, pc: RTCPeerConnection, bridge: CallBridge, relay: RelayState,
                 *, scorer: VideoScorer | None, video_fps: float) -> None:
        self.id = pid
        self.pc = pc
        self.bridge = bridge
        self.relay = relay
        self.hubs: dict[str, TrackHub] = {}
        self._extra_hubs: list[TrackHub] = []
        self.viewers: dict[str, RTCPeerConnection] = {}
        self.video = VideoAnalyser(f"{pid}:{LEG}", scorer, video_fps)
        self.connected = asyncio.Event()
        self._audio_clock = _Clock()
        self._video_clock = _Clock()
        self._resampler: av.AudioResampler | None = None
        self._ending: asyncio.Task[dict[str, Any]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.video_frames = 0
        #: Called once when the participant has ended (the edge forgets it).
        self.on_ended: Callable[[Participant], None] | None = None
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)

    # -- media in ---------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind in self.hubs:
            # Only the first track of a kind is analysed and relayed; the others are
            # still read (aiortc queues decoded frames without bound otherwise).
            log.info("participant %s: extra %s track ignored", self.id, track.kind)
            extra = TrackHub(track)
            self._extra_hubs.append(extra)
            extra.start()
            return
        on_frame = self._on_audio if track.kind == "audio" else self._on_video
        hub = TrackHub(track, on_frame)
        self.hubs[track.kind] = hub
        hub.start()
        assert hub.task is not None
        hub.task.add_done_callback(lambda _t: self._on_hub_end())

    def _on_audio(self, frame: Frame) -> None:
        assert isinstance(frame, av.AudioFrame)
        self.bridge.touch()
        rate = frame.sample_rate
        pts = None
        if frame.pts is not None and frame.time_base is not None:
            pts = int(self._audio_clock.ticks(frame.pts) * frame.time_base * rate)
        self.bridge.audio(LEG, _mono_s16(frame, self), pts, sample_rate=rate)

    def _on_video(self, frame: Frame) -> None:
        assert isinstance(frame, av.VideoFrame)
        self.video_frames += 1
        self.bridge.touch()
        if not self.video.enabled or frame.pts is None or frame.time_base is None:
            return
        seconds = float(self._video_clock.ticks(frame.pts) * frame.time_base)
        if not self.video.take(seconds):
            return
        image = frame.to_ndarray(format="rgb24")
        sample = VideoFrame(self.video.stream_id, seconds, image, "rgb24")
        task = asyncio.get_running_loop().create_task(self._score(sample))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _score(self, frame: VideoFrame) -> None:
        result = await asyncio.get_running_loop().run_in_executor(None, self.video.score, frame)
        if result is not None:
            record = result.to_dict()
            record.update(call_id=self.id, leg=LEG, protocol=PROTOCOL)
            self.bridge.sink.emit(record)
        scorer = self.video.scorer
        if isinstance(scorer, WindowedVideoScorer):
            session = self.bridge.sessions.get(LEG)
            for window in scorer.take_windows():
                if session is not None and not session.closed:
                    session.add_video_window(window)

    # -- lifecycle ----------------------------------------------------------------

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.end(f"connection {state}")

    def _on_hub_end(self) -> None:
        if self.hubs and all(h.ended.is_set() for h in self.hubs.values()):
            self.end("tracks ended")

    async def watch(self, ice_timeout_s: float, idle_timeout_s: float) -> None:
        """A peer that never completes ICE is ended after ``ice_timeout_s``; one
        that stays connected but sends no media for ``idle_timeout_s`` is ended too
        (tracks stopped without the peer saying goodbye)."""
        try:
            await asyncio.wait_for(self.connected.wait(), ice_timeout_s)
        except TimeoutError:
            await self.end("ice timeout")
            return
        self.bridge.touch()
        while not self.ending:
            left = self.bridge.idle_deadline(idle_timeout_s)
            if left <= 0:
                await self.end("idle")
                return
            await asyncio.sleep(min(left, 1.0))

    def end(self, reason: str) -> asyncio.Task[dict[str, Any]]:
        """Idempotent: close the peers, then the session (final verdict)."""
        if self._ending is None:
            self._ending = asyncio.get_running_loop().create_task(self._end(reason))
        return self._ending

    async def _end(self, reason: str) -> dict[str, Any]:
        for viewer in list(self.viewers.values()):
            with contextlib.suppress(Exception):
                await viewer.close()
        self.viewers.clear()
        with contextlib.suppress(Exception):
            await self.pc.close()
        for hub in [*self.hubs.values(), *self._extra_hubs]:
            await hub.stop()
        finals = await self.bridge.finish(reason)
        for task in list(self._tasks):
            task.cancel()
        if self.on_ended is not None:
            self.on_ended(self)
        return {leg: verdict.to_dict() for leg, verdict in finals.items()}

    @property
    def ending(self) -> bool:
        return self._ending is not None


def _mono_s16(frame: av.AudioFrame, owner: Participant) -> npt.NDArray[np.int16]:
    """Decoded Opus is packed s16 stereo: average the channels; other layouts and
    sample formats go through PyAV's resampler (same rate, mono s16)."""
    channels = len(frame.layout.channels)
    if frame.format.name == "s16":
        data = frame.to_ndarray().reshape(-1)
        if channels == 1:
            return data.astype(np.int16, copy=False)
        wide = data.reshape(-1, channels).astype(np.int32)
        return (wide.sum(axis=1) // channels).astype(np.int16)
    if owner._resampler is None:
        owner._resampler = av.AudioResampler(format="s16", layout="mono",
                                             rate=frame.sample_rate)
    parts = [f.to_ndarray().reshape(-1) for f in owner._resampler.resample(frame)]
    return np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
