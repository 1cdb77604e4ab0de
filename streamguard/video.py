"""The video hook of a stream: sample a few frames per second and score them.

Decoding, networking and threads belong to adapters; this module only says
*which* frames to score and turns a scorer's logits into typed records. A
face-swap scorer (face detector → crops → classifier) plugs in through the
:class:`VideoScorer` protocol. Until one is configured the hook is a no-op:
no frame is converted, sampled or scored, and no verdict is invented.

Scoring must never hold up the media path: :meth:`VideoAnalyser.take` admits
a frame only while no other frame of the stream is being scored, so a slow
scorer lowers the sampled rate instead of queueing frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from streamguard.fusion import Estimate
from streamguard.media.frames import VideoFrame

DEFAULT_SAMPLE_FPS = 5.0


@runtime_checkable
class VideoScorer(Protocol):
    """Scores one frame: returns logits (e.g. one per detected face, or one
    per class for the whole frame); an empty list means "nothing to judge"
    (no face found). Runs in a worker thread, so it must not touch the loop."""

    name: str

    def score(self, frame: VideoFrame) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class VideoScore:
    """A scorer's output for one sampled frame, traceable to its media time."""

    stream_id: str
    pts: float
    logits: tuple[float, ...]
    scorer: str
    width: int
    height: int
    latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"type": "video_score", "stream_id": self.stream_id, "pts": self.pts,
                "logits": list(self.logits), "scorer": self.scorer, "width": self.width,
                "height": self.height, "latency_ms": self.latency_ms}


@dataclass(frozen=True, slots=True)
class VideoWindow:
    """A closed window of a participant's video evidence, already fused.

    ``logit`` is the window's calibrated logit (e.g. the mean over its sampled
    frames of the participant's face), ``estimate`` the detector's own
    calibrated fusion after it; the session turns it into a ``Verdict`` with
    ``detector`` set, so policy treats face and voice evidence alike.
    """

    detector: str
    model_version: str
    start: float
    end: float
    frames: int
    logit: float
    estimate: Estimate
    windows: int


@runtime_checkable
class WindowedVideoScorer(VideoScorer, Protocol):
    """A scorer that also fuses its frames into windows; the adapter collects them
    after each ``score`` (never concurrently with it)."""

    def take_windows(self) -> list[VideoWindow]: ...


class FrameSampler:
    """Picks about ``fps`` frames per second from one stream by media time.

    Works on presentation times, not arrival order, so bursty delivery does
    not change which frames are chosen. A timestamp that jumps backwards
    (a restarted sender) or more than ``resync_s`` ahead restarts the grid.
    """

    def __init__(self, fps: float = DEFAULT_SAMPLE_FPS, resync_s: float = 5.0) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self.interval = 1.0 / fps
        self.resync_s = resync_s
        self._next: float | None = None
        self.seen = 0
        self.taken = 0

    def take(self, pts: float) -> bool:
        self.seen += 1
        due = self._next
        if due is None or pts < due - self.interval or pts > due + self.resync_s:
            due = pts
        if pts + 1e-6 < due:
            return False
        # Stay on the grid (no drift from frame jitter) unless we fell behind it.
        self._next = max(due + self.interval, pts + self.interval / 2)
        self.taken += 1
        return True


class VideoAnalyser:
    """One stream's video hook: a sampler plus an optional scorer.

    Adapter protocol: call :meth:`take` with each frame's pts (cheap, on the
    media path); only when it returns ``True`` convert the frame to a
    :class:`VideoFrame` and run :meth:`score` off the media path (a worker
    thread). ``take`` refuses frames while one is being scored.
    """

    def __init__(self, stream_id: str, scorer: VideoScorer | None = None,
                 fps: float = DEFAULT_SAMPLE_FPS) -> None:
        self.stream_id = stream_id
        self.scorer = scorer
        self.sampler = FrameSampler(fps)
        self._in_flight = False
        self.skipped_busy = 0
        self.scored = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.scorer is not None

    def take(self, pts: float) -> bool:
        if self.scorer is None:
            return False
        if not self.sampler.take(pts):
            return False
        if self._in_flight:
            self.skipped_busy += 1
            return False
        self._in_flight = True
        return True

    def score(self, frame: VideoFrame) -> VideoScore | None:
        """Score a frame admitted by :meth:`take`; ``None`` if the scorer failed
        (counted in ``failed``: a corrupt frame must not end the stream)."""
        scorer = self.scorer
        try:
            if scorer is None:
                return None
            started = time.perf_counter()
            try:
                logits = tuple(float(x) for x in scorer.score(frame))
            except Exception:
                self.failed += 1
                return None
            self.scored += 1
            return VideoScore(self.stream_id, frame.pts, logits, scorer.name, frame.width,
                              frame.height, (time.perf_counter() - started) * 1000.0)
        finally:
            self._in_flight = False
