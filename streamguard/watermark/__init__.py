"""Watermarks: keyed audio marks for disclosed synthetic speech (embed + live detection).

The image/video probe for the open DWT-DCT mark of Stable Diffusion pipelines lives in
:mod:`streamguard.watermark.image`; it imports its library (the ``image`` extra) on first use.
"""

from streamguard.watermark.audio import (
    Detection,
    Status,
    WatermarkDetector,
    WatermarkKey,
    detect,
    embed,
    false_alarm_bound,
    threshold_for,
)
from streamguard.watermark.image import (
    ImageWatermarkResult,
    probe_frames,
    probe_image_file,
    probe_video_file,
)

__all__ = [
    "Detection",
    "ImageWatermarkResult",
    "Status",
    "WatermarkDetector",
    "WatermarkKey",
    "detect",
    "embed",
    "false_alarm_bound",
    "probe_frames",
    "probe_image_file",
    "probe_video_file",
    "threshold_for",
]
