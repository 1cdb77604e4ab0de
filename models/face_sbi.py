"""Self-blended images (Shiohara & Yamasaki, CVPR 2022) and frame augmentation.

A self-blended image (SBI) is a real face blended with a slightly
transformed copy of *itself* inside a face-shaped mask. The result has the
artefacts a face swap leaves (a blending boundary, colour / sharpness
mismatch between the inner face and its surroundings, a small geometric
misalignment) without any identity change, so a classifier trained on
real vs SBI needs only real faces and learns the generic blending cues.

Our version, written from the paper's description:

- source = target with a random colour transform (per-channel gain/offset,
  brightness, contrast, saturation), a random blur or sharpen, and a small
  random scale (0.94-1.06) / shift (+-4 % of the face) about the face centre;
- mask = an ellipse around the inner face (centre at the box centre, 0.5-0.6
  of the height down from the top; radii 0.32-0.48 w by 0.40-0.55 h),
  randomly stretched and rotated, feathered by a Gaussian of sigma 2-12 % of
  the face size, times a blend ratio in {1, U(0.55, 1)};
- SBI = mask * source + (1 - mask) * target.

Dev-only (numpy + scipy).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from streamguard.detectors.face import FaceBox

Image = npt.NDArray[np.uint8]
FloatImage = npt.NDArray[np.float32]


def random_affine_frame(src: Image, rng: np.random.Generator, out_hw: tuple[int, int] = (480, 640),
                        face_box: FaceBox | None = None) -> Image:
    """Place ``src`` in an ``out_hw`` frame with random zoom/rotation/shift/flip.

    Zoom is chosen so that the face (if its box is given) is 12-45 % of the
    frame height, the range a webcam produces and BlazeFace short-range finds.
    """
    h, w = out_hw
    sh, sw = src.shape[:2]
    if face_box is not None:
        target = rng.uniform(0.12, 0.45) * h
        zoom = target / max(face_box.height, 1.0)
        fcx, fcy = face_box.center
    else:
        zoom = rng.uniform(0.6, 1.4) * min(h / sh, w / sw)
        fcx, fcy = sw / 2, sh / 2
    angle = np.deg2rad(rng.uniform(-12, 12))
    flip = rng.random() < 0.5
    # where the face centre lands in the output frame
    ox, oy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.6) * h
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    # output (y, x) -> source (y, x): src = R/zoom @ (out - o) + f
    matrix = np.array([[cos, -sin], [sin, cos]])
    if flip:
        matrix = matrix @ np.array([[1, 0], [0, -1]])
    offset = np.array([fcy, fcx]) - matrix @ np.array([oy, ox])
    out = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        out[..., c] = ndimage.affine_transform(src[..., c], matrix, offset, output_shape=(h, w),
                                               order=1, mode="reflect")
    return out


def _colour(img: FloatImage, rng: np.random.Generator) -> FloatImage:
    out = img * rng.uniform(0.9, 1.1, 3)[None, None] + rng.uniform(-12, 12, 3)[None, None]
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-15, 15)
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * rng.uniform(0.7, 1.3)
    return out.astype(np.float32)


def _sharpness(img: FloatImage, rng: np.random.Generator, face: float) -> FloatImage:
    r = rng.random()
    sigma = rng.uniform(0.5, 1.5) * max(face / 120.0, 0.5)
    blurred = ndimage.gaussian_filter(img, (sigma, sigma, 0))
    if r < 0.4:
        return blurred.astype(np.float32)
    if r < 0.7:
        return (img + rng.uniform(0.5, 1.5) * (img - blurred)).astype(np.float32)
    return img


def _shift_scale(img: FloatImage, box: FaceBox, rng: np.random.Generator) -> FloatImage:
    s = rng.uniform(0.94, 1.06)
    dx, dy = rng.uniform(-0.04, 0.04, 2) * np.array([box.width, box.height])
    cx, cy = box.center
    matrix = np.diag([1 / s, 1 / s])
    offset = np.array([cy, cx]) - matrix @ np.array([cy + dy, cx + dx])
    out = np.empty_like(img)
    for c in range(3):
        out[..., c] = ndimage.affine_transform(img[..., c], matrix, offset, order=1,
                                               mode="nearest")
    return out


def face_mask(shape: tuple[int, int], box: FaceBox, rng: np.random.Generator) -> FloatImage:
    h, w = shape
    cx = box.center[0] + rng.uniform(-0.04, 0.04) * box.width
    cy = box.y0 + rng.uniform(0.5, 0.6) * box.height
    rx = rng.uniform(0.32, 0.48) * box.width
    ry = rng.uniform(0.40, 0.55) * box.height
    theta = rng.uniform(-0.2, 0.2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
    mask = ((u / rx) ** 2 + (v / ry) ** 2 <= 1.0).astype(np.float32)
    sigma = rng.uniform(0.02, 0.12) * max(box.width, box.height)
    mask = ndimage.gaussian_filter(mask, sigma)
    mask = np.clip(mask / max(float(mask.max()), 1e-6), 0, 1)
    ratio = 1.0 if rng.random() < 0.4 else rng.uniform(0.55, 1.0)
    return (mask * ratio).astype(np.float32)


def self_blend(frame: Image, box: FaceBox, rng: np.random.Generator) -> Image:
    """An SBI of ``frame`` around ``box`` (same shape, uint8)."""
    # Work on a region around the face only (speed), then paste it back.
    pad = 0.6 * max(box.width, box.height)
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(box.x0 - pad)), max(0, int(box.y0 - pad))
    x1, y1 = min(w, int(box.x1 + pad)), min(h, int(box.y1 + pad))
    region = frame[y0:y1, x0:x1].astype(np.float32)
    local = FaceBox(box.x0 - x0, box.y0 - y0, box.x1 - x0, box.y1 - y0, box.score)
    source = _colour(region, rng)
    source = _sharpness(source, rng, max(box.width, box.height))
    source = _shift_scale(source, local, rng)
    mask = face_mask(region.shape[:2], local, rng)[..., None]
    blended = mask * source + (1 - mask) * region
    out = frame.copy()
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def degrade(crop: Image, rng: np.random.Generator) -> Image:
    """Class-neutral degradations applied to real and SBI crops alike."""
    img = crop.astype(np.float32)
    r = rng.random()
    if r < 0.3:  # lower effective resolution (small face in the frame)
        f = rng.uniform(0.4, 0.8)
        small = ndimage.zoom(img, (f, f, 1), order=1)
        img = ndimage.zoom(small, (crop.shape[0] / small.shape[0], crop.shape[1] / small.shape[1],
                                   1), order=1)[:crop.shape[0], :crop.shape[1]]
    elif r < 0.5:
        img = ndimage.gaussian_filter(img, (rng.uniform(0.3, 1.0),) * 2 + (0,))
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(1, 4), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
