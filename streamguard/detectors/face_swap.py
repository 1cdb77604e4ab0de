"""Face-swap classifier on face crops, and per-participant aggregation into fusion.

Works with any face model that follows the face contract (sidecar JSON next
to the ONNX file, see :data:`streamguard.importers.mesonet.CONTRACT`): the
shipped ``face_swap.onnx`` (trained by ``models/train_face_swap.py``) and
MesoNet checkpoints imported with ``streamguard models import mesonet``.
The sidecar says

- ``input_name``, ``input_layout`` (``NHWC``), ``input_size`` ([H, W]), RGB,
  pixel / 255 scaling, and the crop (``crop.scale`` x max(w, h) square);
- ``output_name``, ``output_kind`` (``logit`` or ``probability``) and
  ``output_positive`` (``swapped`` or ``real``: published MesoNets output
  P(real), 1 = REAL);
- ``calibration`` ``{a, b}`` (+ ``calibration_n``) mapping the swap margin
  ``m`` (the logit of "swapped" as the model sees it) to the calibrated
  logit ``a*m + b`` and ``P(swapped) = sigmoid(a*m + b)``.

:class:`FaceStreamAggregator` turns per-frame face scores of one participant
into the calibrated-logit stream :class:`~streamguard.fusion.StreamFusion`
consumes: the frames sampled in each ``window_seconds`` (5 frames at 5 fps
by default) are averaged in logit space into one window logit, which is
added to the participant's own ``StreamFusion`` (a face stream has its own
fusion instance; it is never mixed into the audio one). When several faces
are in a participant's frame, the largest (the person at the camera) is
scored for that participant; the others are still reported per track.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamguard.calibration import calibration_sd, sigmoid
from streamguard.detectors.face import FaceBox, FaceDetector, FaceTracker, crop_face
from streamguard.errors import ModelError
from streamguard.fusion import Estimate, FusionConfig, StreamFusion
from streamguard.inference.onnx_model import cpu_session
from streamguard.media.frames import VideoFrame
from streamguard.video import VideoWindow

__all__ = [
    "FaceModelInfo",
    "FaceScore",
    "FaceStreamAggregator",
    "FaceSwapDetector",
    "FaceSwapScorer",
    "shipped_face_model",
]


def shipped_face_model() -> Path:
    return Path(str(resources.files("streamguard") / "models" / "face_swap.onnx"))


@dataclass(frozen=True, slots=True)
class FaceModelInfo:
    name: str
    version: str
    architecture: str
    input_name: str
    input_size: tuple[int, int]
    output_name: str
    output_kind: str
    output_positive: str
    crop_scale: float
    cal_method: str
    cal_a: float
    cal_b: float
    cal_n: int
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sidecar(cls, path: Path) -> FaceModelInfo:
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ModelError(f"face model metadata {path} is missing") from exc
        except (OSError, ValueError) as exc:
            raise ModelError(f"face model metadata {path} is unreadable: {exc}") from exc
        try:
            if meta.get("task") != "face_swap":
                raise ModelError(f"{path} does not describe a face-swap model "
                                 f"(task {meta.get('task')!r})")
            if meta.get("input_layout", "NHWC") != "NHWC":
                raise ModelError(f"{path}: only NHWC face models are supported")
            size = meta["input_size"]
            kind = str(meta.get("output_kind", "logit"))
            positive = str(meta["output_positive"])
            if kind not in ("logit", "probability") or positive not in ("real", "swapped"):
                raise ModelError(f"{path}: output_kind must be logit|probability and "
                                 "output_positive real|swapped")
            cal = meta.get("calibration") or {}
            return cls(
                name=str(meta["name"]), version=str(meta["version"]),
                architecture=str(meta.get("architecture", "unknown")),
                input_name=str(meta["input_name"]),
                input_size=(int(size[0]), int(size[1])),
                output_name=str(meta["output_name"]), output_kind=kind,
                output_positive=positive,
                crop_scale=float((meta.get("crop") or {}).get("scale", 1.3)),
                cal_method=str(cal.get("method", "none")), cal_a=float(cal.get("a", 1.0)),
                cal_b=float(cal.get("b", 0.0)), cal_n=int(meta.get("calibration_n", 0)),
                extra=meta)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"face model metadata {path} lacks or mistypes {exc}") from exc


@dataclass(frozen=True, slots=True)
class FaceScore:
    """One face in one frame. ``logit`` is calibrated: ``probability = sigmoid(logit)``."""

    box: FaceBox
    margin: float
    logit: float
    probability: float
    track_id: int | None = None


class FaceSwapDetector:
    """Calibrated P(swapped) per face crop; ``score_*`` are thread-safe."""

    name = "face_swap"

    def __init__(self, model_path: Path | None = None, *, intra_op_threads: int = 1) -> None:
        path = Path(model_path) if model_path is not None else shipped_face_model()
        self.path = path
        self.info = FaceModelInfo.from_sidecar(path.with_suffix(".json"))
        self._session = cpu_session(str(path), threads=intra_op_threads,
                                    error=f"cannot load face model {path}")
        names = {o.name for o in self._session.get_outputs()}
        if self.info.output_name not in names:
            raise ModelError(f"{path}: no output {self.info.output_name!r} (has {sorted(names)})")

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def crop_size(self) -> int:
        return self.info.input_size[0]

    def crop(self, rgb: npt.NDArray[np.uint8], box: FaceBox) -> npt.NDArray[np.uint8]:
        return crop_face(rgb, box, self.crop_size, self.info.crop_scale)

    def margins(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        """Uncalibrated swap margins (logit of "swapped") for uint8 (N, S, S, 3) crops."""
        if crops.ndim != 4 or crops.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        x = crops.astype(np.float32) * np.float32(1.0 / 255.0)
        out = np.asarray(self._session.run([self.info.output_name],
                                           {self.info.input_name: x})[0], dtype=np.float64)
        out = out.reshape(len(crops), -1)[:, 0]
        if self.info.output_kind == "probability":
            p = np.clip(out, 1e-7, 1 - 1e-7)
            out = np.log(p) - np.log1p(-p)
        return -out if self.info.output_positive == "real" else out

    def calibrated_logit(self, margin: float) -> float:
        return self.info.cal_a * margin + self.info.cal_b

    def score_crops(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        """Calibrated P(swapped) per crop."""
        logits = self.info.cal_a * self.margins(crops) + self.info.cal_b
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60))), dtype=np.float64)

    def score_faces(self, rgb: npt.NDArray[np.uint8], boxes: list[FaceBox],
                    track_ids: list[int] | None = None) -> list[FaceScore]:
        if not boxes:
            return []
        crops = np.stack([self.crop(rgb, b) for b in boxes])
        out = []
        for i, (box, m) in enumerate(zip(boxes, self.margins(crops), strict=True)):
            logit = self.calibrated_logit(float(m))
            tid = track_ids[i] if track_ids is not None else None
            out.append(FaceScore(box, float(m), logit, sigmoid(logit), tid))
        return out


@dataclass(frozen=True, slots=True)
class FaceWindow:
    """One closed window of a participant's face stream."""

    start: float
    end: float
    frames: int
    logit: float
    estimate: Estimate


class FaceStreamAggregator:
    """Per-participant face evidence -> calibrated window logits -> ``StreamFusion``.

    Feed every scored frame with :meth:`add_frame` (media time in seconds and
    the frame's face scores); a frame with no face adds nothing. A window
    closes when a frame arrives ``window_seconds`` after the window opened;
    the closed window's mean logit goes into the fusion and the resulting
    :class:`FaceWindow` is returned.
    """

    def __init__(self, detector_info: FaceModelInfo, *, fusion: FusionConfig | None = None,
                 window_seconds: float = 1.0, min_frames: int = 2) -> None:
        if window_seconds <= 0 or min_frames < 1:
            raise ValueError("window_seconds must be > 0 and min_frames >= 1")
        self.window_seconds = window_seconds
        self.min_frames = min_frames
        self._cal_sd = calibration_sd(detector_info.cal_method, detector_info.cal_n)
        self._fusion_config = fusion or FusionConfig()
        self._fusions: dict[str, StreamFusion] = {}
        self._open: dict[str, tuple[float, float, list[float]]] = {}

    def fusion(self, participant: str) -> StreamFusion:
        if participant not in self._fusions:
            self._fusions[participant] = StreamFusion(
                self._fusion_config, calibration_sd=self._cal_sd,
                window_seconds=self.window_seconds, hop_seconds=self.window_seconds)
        return self._fusions[participant]

    @staticmethod
    def primary(scores: list[FaceScore]) -> FaceScore | None:
        """The participant's face: the largest one in the frame."""
        if not scores:
            return None
        return max(scores, key=lambda s: s.box.width * s.box.height)

    def add_frame(self, participant: str, t: float, scores: list[FaceScore]) -> FaceWindow | None:
        if not math.isfinite(t):
            raise ValueError("frame time must be finite")
        closed: FaceWindow | None = None
        current = self._open.get(participant)
        if current is not None and t - current[0] >= self.window_seconds:
            closed = self._close(participant)
            current = None
        face = self.primary(scores)
        if face is None:
            return closed
        if current is None:
            self._open[participant] = (t, t, [face.logit])
        else:
            current[2].append(face.logit)
            self._open[participant] = (current[0], t, current[2])
        return closed

    def flush(self, participant: str) -> FaceWindow | None:
        """Close a participant's partial window (end of stream)."""
        return self._close(participant) if participant in self._open else None

    def _close(self, participant: str) -> FaceWindow | None:
        start, end, logits = self._open.pop(participant)
        if len(logits) < self.min_frames:
            return None
        logit = float(np.mean(logits))
        estimate = self.fusion(participant).add(logit)
        return FaceWindow(start, end, len(logits), logit, estimate)

    def overall(self, participant: str) -> Estimate | None:
        fusion = self._fusions.get(participant)
        return fusion.overall() if fusion is not None else None


class FaceSwapScorer:
    """One participant's face pipeline as a video scorer: detect, track, classify, fuse.

    Returns the calibrated logits of the faces in a frame, largest first, and
    keeps closed windows of the largest face for :meth:`take_windows`. The
    detector and classifier are shared between participants (thread-safe);
    the tracker and aggregator belong to this participant and are only used
    by one frame at a time (the video hook scores one frame per stream at once).
    """

    def __init__(self, detector: FaceDetector, classifier: FaceSwapDetector, *,
                 participant: str = "participant") -> None:
        self.name = classifier.name
        self._detector = detector
        self._classifier = classifier
        self._tracker = FaceTracker()
        self._aggregator = FaceStreamAggregator(classifier.info)
        self._participant = participant
        self._windows: deque[VideoWindow] = deque()  # appended in a worker, drained on the loop

    def score(self, frame: VideoFrame) -> list[float]:
        rgb = frame.image
        if frame.format != "rgb24":
            raise ValueError("FaceSwapScorer needs rgb24 frames")
        tracked = self._tracker.update(self._detector.detect(rgb))
        scores = self._classifier.score_faces(rgb, [t.box for t in tracked],
                                              [t.track_id for t in tracked])
        window = self._aggregator.add_frame(self._participant, frame.pts, scores)
        if window is not None:
            self._windows.append(VideoWindow(
                detector=self.name, model_version=self._classifier.version,
                start=window.start, end=window.end, frames=window.frames, logit=window.logit,
                estimate=window.estimate,
                windows=self._aggregator.fusion(self._participant).windows))
        ordered = sorted(scores, key=lambda s: s.box.width * s.box.height, reverse=True)
        return [s.logit for s in ordered]

    def take_windows(self) -> list[VideoWindow]:
        out = []
        while self._windows:
            out.append(self._windows.popleft())
        return out
