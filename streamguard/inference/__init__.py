"""Model execution: ONNX Runtime sessions and the cross-stream micro-batcher."""

from streamguard.inference.batcher import BatcherStats, MicroBatcher
from streamguard.inference.onnx_model import ModelInfo, OnnxModel

__all__ = ["BatcherStats", "MicroBatcher", "ModelInfo", "OnnxModel"]
