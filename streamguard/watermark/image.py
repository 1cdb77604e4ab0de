"""Probe for the open DWT-DCT image watermark of the ``invisible-watermark`` package.

Stable Diffusion pipelines embed this mark by default (numbers and limits in
models/WATERMARK.md):

* **SDXL** (Stability's ``generative-models`` and diffusers'
  ``StableDiffusionXLWatermarker``): the 48-bit message
  ``0b101100111110110010010000011110111011000110011110``, ``dwtDct`` method.
  diffusers up to 0.18 handed RGB arrays to an encoder that expects BGR;
  later versions flip to BGR first, so both channel orders are tried.
* **Stable Diffusion 1.x** (CompVis ``scripts/txt2img.py``): the bytes
  ``b"StableDiffusionV1"`` (136 bits); **2.x** (Stability ``stablediffusion``):
  ``b"SDV2"`` (32 bits).

How the scheme works (``imwatermark.maxDct.EmbedMaxDct``): the image is
converted to YUV; for the U plane (the default scales are 0/36/36 for Y/U/V, but the
library's loops visit only Y and U, so V carries nothing), a one-level
Haar DWT gives the LL band, which is cut into 4×4 blocks; in block *n* the
largest-magnitude non-DC coefficient is quantised so that ``|c| mod 36`` lies
in the lower (bit 0) or upper (bit 1) half. Bit *i* of an *L*-bit message is
repeated in every block with ``n mod L == i``; decoding averages the per-block
decisions per bit.

We read the per-block decisions once per channel order (vectorised: the
library's per-block Python loop costs ~0.35 s per megapixel per variant; the test suite
checks that this reading equals ``EmbedMaxDct.decode`` bit for bit), group them
for each known message length, and average over video frames before the hard
decision. A message counts as detected when its bit errors are so few that an
unmarked image, whose decoded bits are assumed fair coin flips, would reach
them with probability ≤ :data:`FALSE_ALARM_TARGET` after a union bound over
all (message, channel order) pairs. That assumption is checked on unmarked
images in ``bench/watermark.py``.

The library is imported lazily (the ``image`` extra). Its package ``__init__``
imports the RivaGAN module, which imports torch (seconds of start-up);
StreamGuard never uses RivaGAN, so that module is replaced by a stub for the
import (only the DWT-DCT code is used).

Pixel convention matters: the scheme quantises the largest-magnitude LL
coefficient, which is not invariant to the chroma offset, and OpenCV's YUV
puts that offset at 128 for 8-bit input but at 0.5 for float input. diffusers
and Stability's SDXL code embed on float arrays; the SD 1.x scripts and the
library's CLI on uint8 arrays. A mark is only readable in the convention it
was embedded in, so both are read (4 variants with the two channel orders).
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamguard.errors import MediaError

__all__ = [
    "FALSE_ALARM_TARGET",
    "KNOWN_MARKS",
    "ImageMark",
    "ImageWatermarkResult",
    "ImageWatermarkUnavailable",
    "embed_known",
    "probe_frames",
    "probe_image_file",
    "probe_video_file",
]

UInt8Image = npt.NDArray[np.uint8]

MIN_PIXELS = 256 * 256  # the library refuses smaller images
MAX_PIXELS = 50_000_000  # decompression-bomb cap
MAX_IMAGE_FILE_BYTES = 100 * 1024 * 1024
FALSE_ALARM_TARGET = 1e-6
BLOCK = 4
SCALES = (0, 36, 36)  # Y, U, V: EmbedMaxDct's defaults, as the SD pipelines use them
# (its loops run over channels 0 and 1 only, so in effect the mark lives in U alone)
CHANNEL_ORDERS = ("bgr", "rgb")
# How the encoder saw the pixels: float arrays (diffusers, Stability's SDXL code: OpenCV's
# float YUV has its chroma offset at 0.5) or uint8 arrays (SD 1.x scripts, the library's CLI:
# offset 128). The scheme picks the largest-magnitude coefficient, which is not offset
# invariant, so a mark is only readable in the convention it was embedded in.
CONVENTIONS = ("float", "uint8")
VARIANTS = tuple((o, c) for c in CONVENTIONS for o in CHANNEL_ORDERS)
VIDEO_FRAMES = 8
VIDEO_SECONDS = 30.0
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff",
                            ".jp2", ".ppm", ".pgm"})


def _bits_of_int(value: int) -> tuple[int, ...]:
    return tuple(int(b) for b in bin(value)[2:])


def _bits_of_bytes(data: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(data, dtype=np.uint8)))


@dataclass(frozen=True, slots=True)
class ImageMark:
    """A published default message of a generator."""

    name: str
    bits: tuple[int, ...]
    generator: str


KNOWN_MARKS: tuple[ImageMark, ...] = (
    ImageMark("sdxl", _bits_of_int(0b101100111110110010010000011110111011000110011110),
              "Stable Diffusion XL (Stability generative-models, diffusers)"),
    ImageMark("sd1", _bits_of_bytes(b"StableDiffusionV1"),
              "Stable Diffusion 1.x reference scripts (CompVis)"),
    ImageMark("sd2", _bits_of_bytes(b"SDV2"), "Stable Diffusion 2.x reference scripts"),
)


class ImageWatermarkUnavailable(MediaError):
    """The ``invisible-watermark`` library (the ``image`` extra) is not installed."""


@dataclass(frozen=True, slots=True)
class ImageWatermarkResult:
    """Best match among :data:`KNOWN_MARKS`; ``false_alarm`` bounds P(match | unmarked)."""

    detected: bool
    mark: str  # name of the best-matching known message
    generator: str
    bit_errors: int
    bits: int
    false_alarm: float
    variant: str  # channel order / pixel convention the mark was read in
    frames: int
    width: int
    height: int

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": "invisible-watermark dwtDct", "detected": self.detected,
                "mark": self.mark if self.detected else None, "best_match": self.mark,
                "generator": self.generator if self.detected else None,
                "bit_errors": self.bit_errors, "bits": self.bits,
                "false_alarm": self.false_alarm, "variant": self.variant,
                "frames": self.frames, "width": self.width, "height": self.height}


@cache
def _library() -> tuple[Any, Any, Any]:
    """(cv2, pywt, imwatermark) imported lazily; RivaGAN stubbed when torch is absent."""
    try:
        cv2 = importlib.import_module("cv2")
        pywt = importlib.import_module("pywt")
    except ImportError as exc:
        raise ImageWatermarkUnavailable(
            "the image watermark probe needs the 'image' extra "
            f"(pip install 'streamguard[image]'): {exc}") from exc
    stubbed = False
    if "imwatermark" not in sys.modules:
        # The package __init__ imports RivaGAN, which imports torch (seconds, GBs); StreamGuard
        # uses only DWT-DCT, so RivaGAN is stubbed for this import (and only for it).
        stub = types.ModuleType("imwatermark.rivaGan")

        class RivaWatermark:  # never used by StreamGuard
            def __init__(self, *args: object, **kwargs: object) -> None:
                raise ImageWatermarkUnavailable("RivaGAN is not loaded by StreamGuard")

        stub.RivaWatermark = RivaWatermark  # type: ignore[attr-defined]
        sys.modules["imwatermark.rivaGan"] = stub
        stubbed = True
    try:
        imwatermark = importlib.import_module("imwatermark")
    except ImportError as exc:
        raise ImageWatermarkUnavailable(
            "the image watermark probe needs the 'image' extra "
            f"(pip install 'streamguard[image]'): {exc}") from exc
    finally:
        if stubbed:
            sys.modules.pop("imwatermark.rivaGan", None)
    return cv2, pywt, imwatermark


def _check_image(image: npt.NDArray[Any]) -> UInt8Image:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise MediaError(f"expected an 8-bit 3-channel image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if h * w == 0:
        raise MediaError("image has no pixels")
    if h * w < MIN_PIXELS:
        raise MediaError(f"image too small ({w}×{h}); the DWT-DCT mark needs at least "
                         "256×256 pixels")
    if h * w > MAX_PIXELS:
        raise MediaError(f"image too large ({w}×{h} > {MAX_PIXELS} pixels)")
    return image


def block_decisions(bgr: UInt8Image, channel_order: str = "bgr",
                    convention: str = "uint8") -> list[npt.NDArray[np.float64]]:
    """Per-block bit decisions (0/1) of the marked plane(s), in the library's block order.

    Equals ``EmbedMaxDct.infer_dct_matrix`` applied to every block, vectorised.
    """
    cv2, pywt, _ = _library()
    image = _check_image(bgr)
    if channel_order == "rgb":
        image = np.ascontiguousarray(image[:, :, ::-1])
    elif channel_order != "bgr":
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', not {channel_order!r}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be 'float' or 'uint8', not {convention!r}")
    rows, cols = image.shape[0] // 4 * 4, image.shape[1] // 4 * 4
    pixels = image.astype(np.float32) if convention == "float" else image
    yuv = cv2.cvtColor(pixels, cv2.COLOR_BGR2YUV)
    out = []
    for channel in range(2):  # as the library: only Y and U are visited, and Y has scale 0
        scale = SCALES[channel]
        if scale <= 0:
            continue
        ca1, _ = pywt.dwt2(yuv[:rows, :cols, channel], "haar")
        r, c = ca1.shape[0] // BLOCK, ca1.shape[1] // BLOCK
        blocks = (ca1[:r * BLOCK, :c * BLOCK].reshape(r, BLOCK, c, BLOCK)
                  .transpose(0, 2, 1, 3).reshape(r * c, BLOCK * BLOCK))
        pos = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1
        val = np.abs(blocks[np.arange(blocks.shape[0]), pos])
        out.append(((val % scale) > 0.5 * scale).astype(np.float64))
    return out


def _bit_means(decisions: Sequence[npt.NDArray[np.float64]],
               length: int) -> npt.NDArray[np.float64]:
    sums = np.zeros(length)
    counts = np.zeros(length)
    for d in decisions:
        idx = np.arange(d.size) % length
        sums += np.bincount(idx, weights=d, minlength=length)
        counts += np.bincount(idx, minlength=length)
    return np.asarray(sums / np.maximum(counts, 1), dtype=np.float64)


def binomial_tail(errors: int, bits: int) -> float:
    """P(Binomial(bits, 1/2) <= errors): chance an unmarked image matches this well."""
    return float(sum(math.comb(bits, k) for k in range(errors + 1)) / 2.0 ** bits)


def probe_frames(frames: Iterable[npt.NDArray[Any]],
                 marks: Sequence[ImageMark] = KNOWN_MARKS) -> ImageWatermarkResult:
    """Look for a known DWT-DCT message in images/frames of one size (averaged soft bits)."""
    sums: dict[tuple[str, int], npt.NDArray[np.float64]] = {}
    count = 0
    width = height = 0
    for frame in frames:
        image = _check_image(frame)
        if count and image.shape[:2] != (height, width):
            raise MediaError("all frames must have the same size")
        height, width = image.shape[:2]
        for order, convention in VARIANTS:
            decisions = block_decisions(image, order, convention)
            for length in {len(m.bits) for m in marks}:
                key = (f"{order}/{convention}", length)
                means = _bit_means(decisions, length)
                sums[key] = sums[key] + means if key in sums else means
        count += 1
    if count == 0:
        raise MediaError("no frames to probe")
    comparisons = len(marks) * len(VARIANTS)
    best: ImageWatermarkResult | None = None
    for order, convention in VARIANTS:
        variant = f"{order}/{convention}"
        for mark in marks:
            means = sums[(variant, len(mark.bits))] / count
            decoded = (means * 255 > 127).astype(np.int64)  # the library's decision rule
            errors = int(np.sum(decoded != np.asarray(mark.bits)))
            bound = min(1.0, comparisons * binomial_tail(errors, len(mark.bits)))
            result = ImageWatermarkResult(
                detected=bound <= FALSE_ALARM_TARGET, mark=mark.name, generator=mark.generator,
                bit_errors=errors, bits=len(mark.bits), false_alarm=bound,
                variant=variant, frames=count, width=width, height=height)
            if best is None or bound < best.false_alarm:
                best = result
    assert best is not None
    return best


def read_image(path: str | Path) -> UInt8Image:
    """An image file as a BGR uint8 array; clear errors for missing, empty or corrupt files."""
    cv2, _, _ = _library()
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError as exc:
        raise MediaError(f"{p.name}: no such file") from exc
    if p.is_dir():
        raise MediaError(f"{p.name}: is a directory")
    if size == 0:
        raise MediaError(f"{p.name}: empty file (no pixels)")
    if size > MAX_IMAGE_FILE_BYTES:
        raise MediaError(f"{p.name}: image file too large ({size} bytes)")
    data = np.frombuffer(p.read_bytes(), dtype=np.uint8)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise MediaError(f"{p.name}: image could not be decoded ({exc})") from exc
    if image is None or image.size == 0:
        raise MediaError(f"{p.name}: not a decodable image (no pixels)")
    return np.ascontiguousarray(image, dtype=np.uint8)


def probe_image_file(path: str | Path) -> ImageWatermarkResult:
    image = read_image(path)
    try:
        return probe_frames([image])
    except MediaError as exc:
        raise MediaError(f"{Path(path).name}: {exc}") from exc


def probe_video_file(path: str | Path, *, frames: int = VIDEO_FRAMES,
                     seconds: float = VIDEO_SECONDS) -> ImageWatermarkResult | None:
    """Probe ``frames`` frames spread over the first ``seconds``; None without a video stream."""
    import av

    name = Path(path).name
    picked: list[UInt8Image] = []
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            span = min(seconds, duration) if duration else seconds
            targets = [span * (i + 0.5) / frames for i in range(frames)]
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else 0.0
                if t > span + 1.0 or len(picked) >= frames:
                    break
                if targets and t >= targets[0]:
                    while targets and t >= targets[0]:
                        targets.pop(0)
                    picked.append(np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{name}: video could not be decoded ({exc})") from exc
    if not picked:
        raise MediaError(f"{name}: no decodable video frames")
    try:
        return probe_frames(picked)
    except MediaError as exc:
        raise MediaError(f"{name}: {exc}") from exc


def embed_known(bgr: npt.NDArray[Any], mark: ImageMark = KNOWN_MARKS[0], *,
                convention: str = "float") -> UInt8Image:
    """Embed a known message with the library's encoder as a pipeline does (tests, bench).

    ``float``: as diffusers / Stability's SDXL code (float BGR in, rounded to 8 bits after);
    ``uint8``: as the SD 1.x scripts and the library's CLI.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be 'float' or 'uint8', not {convention!r}")
    _, _, imwatermark = _library()
    encoder = imwatermark.WatermarkEncoder()
    encoder.set_watermark("bits", list(mark.bits))
    dtype = np.float32 if convention == "float" else np.uint8
    out = encoder.encode(np.asarray(bgr, dtype=dtype), "dwtDct")
    return np.asarray(np.clip(np.rint(out), 0, 255), dtype=np.uint8)
