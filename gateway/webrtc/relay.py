"""Inline relay: a participant's decoded tracks fanned out to viewers, guarded.

One reader task per published track (:class:`TrackHub`) pulls decoded frames
once, hands each to the analysis callback (the core session, the video hook)
and to every viewer's bounded queue. A viewer's :class:`GuardedVideoTrack` /
:class:`GuardedAudioTrack` returns the *same* frame object it was handed while
no action is active, so pass-through costs one queue hand-off and no copy.
Only while an action is active is a frame rebuilt:

- ``warn``: a red banner with white text over the top of the picture for
  ``banner_seconds``, and the spoken warning prompt (48 kHz) mixed into the audio;
- ``hold``: a blanked picture carrying an "on hold" banner, and silent audio,
  until ``release``.

A viewer that reads too slowly loses its oldest frames (bounded queue), never
the publisher's analysis or another viewer's media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger("streamguard.gateway")

DEFAULT_WARNING_TEXT = "WARNING: this participant may be a deepfake"
HOLD_TEXT = "ON HOLD: possible deepfake"
QUEUE_FRAMES = 8  # per viewer and track: ~160 ms of audio, ~270 ms of 30 fps video

Frame = av.AudioFrame | av.VideoFrame
Queued = tuple[Frame, float] | None  # (frame, perf_counter when the hub had it); None = ended


@dataclass
class RelayState:
    """What the policy asked the relay to do to one participant's media."""

    warning_pcm: npt.NDArray[np.int16]  # mono 48 kHz
    warning_rate: int = 48000
    banner_seconds: float = 15.0
    hold: bool = False
    banner_text: str | None = None
    banner_until: float = 0.0
    prompt_started: float | None = None  # monotonic time the spoken warning was started

    def apply(self, kind: str, text: str | None = None) -> None:
        now = time.monotonic()
        if kind == "warn":
            self.banner_text = text or DEFAULT_WARNING_TEXT
            self.banner_until = now + self.banner_seconds
            if self.prompt_started is None or now - self.prompt_started > self.prompt_seconds:
                self.prompt_started = now
        elif kind == "hold":
            self.hold = True
            self.prompt_started = None
        elif kind == "release":
            self.hold = False
            self.banner_text = None
            self.banner_until = 0.0
            self.prompt_started = None

    @property
    def prompt_seconds(self) -> float:
        return len(self.warning_pcm) / self.warning_rate

    def banner(self) -> str | None:
        if self.hold:
            return HOLD_TEXT
        if self.banner_text is not None and time.monotonic() < self.banner_until:
            return self.banner_text
        return None

    @property
    def active(self) -> bool:
        """True when any frame would be changed; the pass-through test per frame."""
        return self.hold or time.monotonic() < self.banner_until or self.prompt_started is not None


class TrackHub:
    """Reads one remote track once and fans frames out to analysis and viewers."""

    def __init__(self, track: MediaStreamTrack,
                 on_frame: Callable[[Frame], None] | None = None) -> None:
        self.track = track
        self.kind = track.kind
        self.on_frame = on_frame
        self._queues: set[asyncio.Queue[Queued]] = set()
        self.frames = 0
        self.analysis_errors = 0
        self.ended = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def subscribe(self) -> asyncio.Queue[Queued]:
        queue: asyncio.Queue[Queued] = asyncio.Queue(QUEUE_FRAMES)
        if self.ended.is_set():
            queue.put_nowait(None)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Queued]) -> None:
        self._queues.discard(queue)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    return
                now = time.perf_counter()
                self.frames += 1
                for queue in self._queues:
                    _offer(queue, (frame, now))
                if self.on_frame is not None:
                    try:
                        self.on_frame(frame)
                    except Exception as exc:  # a corrupt frame must not end the track
                        self.analysis_errors += 1
                        if self.analysis_errors <= 3:
                            log.warning("%s frame analysis failed: %s", self.kind, exc)
        finally:
            self.ended.set()
            for queue in self._queues:
                _offer(queue, None)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def _offer(queue: asyncio.Queue[Queued], item: Queued) -> None:
    """Put without blocking; a full queue (slow viewer) loses its oldest frame."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(item)


class _GuardedTrack(MediaStreamTrack):
    """Common part: take frames from a hub queue. For benches, ``latencies``
    records the seconds between the hub receiving a frame and this track handing
    it on (queueing included), ``processing`` the time this track itself spent
    on the frame (the pass-through test, or drawing a banner)."""

    def __init__(self, hub: TrackHub, state: RelayState) -> None:
        super().__init__()
        self.hub = hub
        self.state = state
        self._queue = hub.subscribe()
        self.latencies: list[float] | None = None
        self.processing: list[float] | None = None
        self._took = 0.0

    async def _next(self) -> tuple[Frame, float]:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        if self.processing is not None:
            self._took = time.perf_counter()
        return item

    def _record(self, received: float) -> None:
        if self.latencies is not None or self.processing is not None:
            now = time.perf_counter()
            if self.latencies is not None:
                self.latencies.append(now - received)
            if self.processing is not None:
                self.processing.append(now - self._took)

    def stop(self) -> None:
        self.hub.unsubscribe(self._queue)
        super().stop()


class GuardedVideoTrack(_GuardedTrack):
    kind = "video"

    def __init__(self, hub: TrackHub, state: RelayState) -> None:
        super().__init__(hub, state)
        self._banners: dict[tuple[int, int, str], _Banner] = {}

    async def recv(self) -> av.VideoFrame:
        frame, received = await self._next()
        assert isinstance(frame, av.VideoFrame)
        if self.state.active:
            frame = self._guard(frame)
        self._record(received)
        return frame

    def _guard(self, frame: av.VideoFrame) -> av.VideoFrame:
        text = self.state.banner()
        if text is None and not self.state.hold:
            return frame
        width, height = frame.width, frame.height
        if width % 2 or height % 2 or width < 16 or height < 16:
            return frame  # odd or tiny pictures are forwarded unchanged
        if self.state.hold:
            image = np.empty((height * 3 // 2, width), dtype=np.uint8)
            image[:height] = 16  # black in limited-range BT.601
            image[height:] = 128
        else:
            image = frame.to_ndarray(format="yuv420p")  # the one copy, only under an action
        if text is not None:
            self._banner(width, height, text).draw(image, height)
        out = av.VideoFrame.from_ndarray(image, format="yuv420p")
        out.pts = frame.pts
        out.time_base = frame.time_base
        return out

    def _banner(self, width: int, height: int, text: str) -> _Banner:
        key = (width, height, text)
        banner = self._banners.get(key)
        if banner is None:
            if len(self._banners) > 8:
                self._banners.clear()
            banner = self._banners[key] = _Banner.render(width, height, text)
        return banner


class GuardedAudioTrack(_GuardedTrack):
    kind = "audio"

    def __init__(self, hub: TrackHub, state: RelayState) -> None:
        super().__init__(hub, state)
        self._prompts: dict[int, npt.NDArray[np.int16]] = {}
        self._prompt_pos = 0
        self._prompt_started: float | None = None

    async def recv(self) -> av.AudioFrame:
        frame, received = await self._next()
        assert isinstance(frame, av.AudioFrame)
        if self.state.active:
            frame = self._guard(frame)
        self._record(received)
        return frame

    def _guard(self, frame: av.AudioFrame) -> av.AudioFrame:
        state = self.state
        if state.hold:
            return _silent_like(frame)
        if state.prompt_started is None:
            return frame
        if state.prompt_started != self._prompt_started:
            self._prompt_started, self._prompt_pos = state.prompt_started, 0
        if frame.format.name not in ("s16", "s16p"):
            return frame
        prompt = self._prompt(frame.sample_rate)
        if self._prompt_pos >= len(prompt):
            return frame
        samples, channels = frame.samples, len(frame.layout.channels)
        piece = prompt[self._prompt_pos:self._prompt_pos + samples].astype(np.int32)
        self._prompt_pos += samples
        data = frame.to_ndarray()
        planar = frame.format.name == "s16p"
        pcm = (data.astype(np.int32) if planar else
               data.reshape(samples, channels).astype(np.int32))
        if planar:
            pcm[:, :len(piece)] = pcm[:, :len(piece)] // 2 + piece[None, :]
        else:
            pcm[:len(piece)] = pcm[:len(piece)] // 2 + piece[:, None]
        mixed = np.clip(pcm, -32768, 32767).astype(np.int16)
        out = av.AudioFrame.from_ndarray(mixed if planar else mixed.reshape(1, -1),
                                         format=frame.format.name, layout=frame.layout.name)
        out.sample_rate = frame.sample_rate
        out.pts = frame.pts
        out.time_base = frame.time_base
        return out

    def _prompt(self, rate: int) -> npt.NDArray[np.int16]:
        prompt = self._prompts.get(rate)
        if prompt is None:
            prompt = self.state.warning_pcm
            if rate != self.state.warning_rate:
                from streamguard.media.resample import StreamResampler

                resampler = StreamResampler(self.state.warning_rate, rate)
                prompt = np.concatenate([resampler.push(prompt), resampler.flush()])
            self._prompts[rate] = prompt
        return prompt


def _silent_like(frame: av.AudioFrame) -> av.AudioFrame:
    out = av.AudioFrame(format=frame.format.name, layout=frame.layout.name,
                        samples=frame.samples)
    for plane in out.planes:
        plane.update(bytes(plane.buffer_size))
    out.sample_rate = frame.sample_rate
    out.pts = frame.pts
    out.time_base = frame.time_base if frame.time_base is not None else Fraction(
        1, frame.sample_rate)
    return out


@dataclass(frozen=True, slots=True)
class _Banner:
    """A pre-rendered banner as I420 planes, pasted over the top rows of a frame."""

    y: npt.NDArray[np.uint8]
    u: npt.NDArray[np.uint8]
    v: npt.NDArray[np.uint8]

    @classmethod
    def render(cls, width: int, height: int, text: str) -> _Banner:
        bar = max(16, (height // 7) & ~1)
        rgb = np.zeros((bar, width, 3), dtype=np.uint8)
        rgb[:] = (200, 16, 16)
        mask = _text_mask(text, width, bar)
        rgb[mask] = (255, 255, 255)
        r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
        y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
        u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
        v = 128 + 0.439 * r - 0.368 * g - 0.071 * b

        def sub(plane: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
            quarter = plane.reshape(bar // 2, 2, width // 2, 2).mean(axis=(1, 3))
            return np.clip(np.rint(quarter), 0, 255).astype(np.uint8)

        return cls(np.clip(np.rint(y), 0, 255).astype(np.uint8), sub(u), sub(v))

    def draw(self, image: npt.NDArray[np.uint8], height: int) -> None:
        """Paste into an I420 array laid out as PyAV's ``yuv420p`` ndarray."""
        width = image.shape[1]
        bar = self.y.shape[0]
        image[:bar] = self.y
        # U then V planes, each (height/2, width/2), follow the Y plane back to back.
        chroma = image[height:].reshape(-1)
        quarter = (height // 2) * (width // 2)
        u_plane = chroma[:quarter].reshape(height // 2, width // 2)
        v_plane = chroma[quarter:].reshape(height // 2, width // 2)
        u_plane[:bar // 2] = self.u
        v_plane[:bar // 2] = self.v


def _text_mask(text: str, width: int, bar: int) -> npt.NDArray[np.bool_]:
    """White text pixels, rendered with Pillow's built-in font, shrunk to fit."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:  # Pillow is in the gateway extra; without it the bar stays plain
        return np.zeros((bar, width), dtype=bool)
    size = max(8, int(bar * 0.6))
    while True:
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = font.getbbox(text)
        if right - left <= width - 8:
            break
        if size > 9:
            size -= 1
        elif " " in text.rstrip("."):  # smallest legible size: drop words instead
            text = text.rstrip(".").rsplit(" ", 1)[0] + "..."
        else:
            break
    canvas = Image.new("L", (width, bar), 0)
    draw = ImageDraw.Draw(canvas)
    x = max(4, (width - (right - left)) // 2 - left)
    y = (bar - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill=255, font=font)
    return np.asarray(canvas) > 127
