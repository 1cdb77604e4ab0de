"""Watermarks: keyed audio marks for disclosed synthetic speech (embed + live detection)."""

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

__all__ = [
    "Detection",
    "Status",
    "WatermarkDetector",
    "WatermarkKey",
    "detect",
    "embed",
    "false_alarm_bound",
    "threshold_for",
]
