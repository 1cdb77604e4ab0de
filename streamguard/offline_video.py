"""Offline face-swap scan of a video file: the video half of ``streamguard scan``.

:func:`scan_video_faces` decodes a file with PyAV, samples frames at about
``fps`` per second (by presentation time, so variable frame rates work),
detects faces (:class:`~streamguard.detectors.face.FaceDetector`), tracks them
(:class:`~streamguard.detectors.face.FaceTracker`) and scores each tracked
face with the face-swap classifier. Each track is a participant
(``face-1``, ``face-2``, ...); its frame scores go through a
:class:`~streamguard.detectors.face_swap.FaceStreamAggregator`, the same
windowing and calibrated fusion the live path uses, and every closed window
comes back as a :class:`FaceWindowScore`, in time order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from streamguard.detectors.face import FaceDetector, FaceTracker
from streamguard.detectors.face_swap import FaceStreamAggregator, FaceSwapDetector, FaceWindow
from streamguard.errors import MediaError
from streamguard.events import State

__all__ = ["FaceWindowScore", "scan_video_faces"]


@dataclass(frozen=True, slots=True)
class FaceWindowScore:
    """One window of one tracked face.

    ``window_probability`` is the calibrated P(swapped) of this window alone
    (sigmoid of the mean frame logit); ``probability``/``interval``/``state``
    are the participant's fused estimate after this window.
    """

    participant: str
    track_id: int
    start: float
    end: float
    frames: int
    window_probability: float
    probability: float
    interval: tuple[float, float]
    state: State
    model_version: str


def _to_score(participant: str, track_id: int, window: FaceWindow,
              version: str) -> FaceWindowScore:
    est = window.estimate
    return FaceWindowScore(
        participant=participant, track_id=track_id, start=window.start, end=window.end,
        frames=window.frames, window_probability=float(1 / (1 + np.exp(-window.logit))),
        probability=est.probability, interval=est.interval, state=est.state,
        model_version=version)


def scan_video_faces(path: Path | str, *, fps: float = 5.0,
                     detector: FaceDetector | None = None,
                     classifier: FaceSwapDetector | None = None,
                     window_seconds: float = 1.0,
                     max_frames: int | None = None) -> list[FaceWindowScore]:
    """Per-face, per-window face-swap scores of a video file (empty if it has no faces).

    Raises :class:`~streamguard.errors.MediaError` for a file that cannot be
    opened or has no video stream; undecodable packets in the middle are
    skipped.
    """
    if fps <= 0:
        raise ValueError("fps must be > 0")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"cannot open {path}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream")
        detector = detector or FaceDetector()
        classifier = classifier or FaceSwapDetector()
        tracker = FaceTracker(max_missed=max(1, round(fps)))
        agg = FaceStreamAggregator(classifier.info, window_seconds=window_seconds)
        out: list[FaceWindowScore] = []
        seen: set[int] = set()
        step = 1.0 / fps
        next_t = 0.0
        sampled = 0
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        try:
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.error.InvalidDataError:
                    continue
                t = float(frame.time) if frame.time is not None else index / 25.0
                index += 1
                if t + 1e-6 < next_t:
                    continue
                next_t += step
                if next_t <= t:  # a gap in the stream: restart the grid here
                    next_t = t + step
                rgb = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
                tracked = tracker.update(detector.detect(rgb))
                sampled += 1
                by_track = {tf.track_id: tf.box for tf in tracked}
                scores = classifier.score_faces(rgb, list(by_track.values()),
                                                list(by_track.keys()))
                for score in scores:
                    assert score.track_id is not None
                    seen.add(score.track_id)
                    window = agg.add_frame(f"face-{score.track_id}", t, [score])
                    if window is not None:
                        out.append(_to_score(f"face-{score.track_id}", score.track_id,
                                             window, classifier.version))
                if max_frames is not None and sampled >= max_frames:
                    break
        except av.FFmpegError as exc:
            if sampled == 0:
                raise MediaError(f"cannot decode video of {path}: {exc}") from exc
    for tid in sorted(seen):
        window = agg.flush(f"face-{tid}")
        if window is not None:
            out.append(_to_score(f"face-{tid}", tid, window, classifier.version))
    out.sort(key=lambda w: (w.start, w.track_id))
    return out
