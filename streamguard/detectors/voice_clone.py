"""Voice-clone / synthetic-speech detector (anti-spoofing countermeasure).

Works with any model that follows the contract in models/README.md: the
shipped small CNN and imported AASIST / AASIST-L alike. The detector owns the
model-specific steps — fitting a window to the model's input length and
reading its logits — so the rest of the pipeline stays model-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamguard.calibration import sigmoid
from streamguard.inference.onnx_model import ModelInfo


@dataclass(frozen=True, slots=True)
class WindowScore:
    """``margin`` is logit(spoof) - logit(bona fide); ``probability`` is calibrated."""

    margin: float
    probability: float


class VoiceCloneDetector:
    name = "voice_clone"

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    @property
    def version(self) -> str:
        return self.info.version

    def prepare(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Fit a window to the model's length: keep the first samples or tile a short one.

        Tiling repeats the audio rather than padding silence, as the AASIST
        recipe does, because long digital silence itself looks synthetic.
        """
        n = self.info.input_samples
        if len(samples) >= n:
            return np.ascontiguousarray(samples[:n], dtype=np.float32)
        if len(samples) == 0:
            raise ValueError("cannot score an empty window")
        reps = n // len(samples) + 1
        return np.tile(samples, reps)[:n].astype(np.float32, copy=False)

    def score(self, logits: npt.NDArray[np.float32]) -> WindowScore:
        bona = self.info.bonafide_index
        margin = float(logits[1 - bona] - logits[bona])
        cal = self.info.calibration
        return WindowScore(margin, sigmoid(cal.a * margin + cal.b))

    def calibrated_logit(self, margin: float) -> float:
        cal = self.info.calibration
        return cal.a * margin + cal.b

