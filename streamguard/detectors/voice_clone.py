"""Voice-clone / synthetic-speech detector (anti-spoofing countermeasure).

Works with any model that follows the contract in models/README.md: the
shipped small CNN and imported AASIST / AASIST-L alike. The detector owns the
model-specific steps — fitting a window to the model's input length and
reading its logits — so the rest of the pipeline stays model-agnostic.

With a :class:`~streamguard.detectors.phase_cue.PhaseCue` fitted for the
model, each window's relative-phase z-score against genuine speech is computed
in the same inference pool as the logits and fused with the CNN's margin: the
CNN knows the generator families it was trained on, the phase cue catches
source-filter vocoders it never saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamguard.calibration import sigmoid
from streamguard.detectors.phase_cue import PhaseCue
from streamguard.errors import ModelError
from streamguard.inference.batcher import RunBatch
from streamguard.inference.onnx_model import Calibration, ModelInfo


@dataclass(frozen=True, slots=True)
class WindowScore:
    """``margin`` is logit(spoof) - logit(bona fide) of the CNN; ``logit`` is the
    calibrated log-odds of the window being synthetic (of the CNN margin fused with
    the phase cue when the cue is on), ``probability`` its sigmoid.
    ``phase_z`` is the phase cue's z-score against genuine speech (above zero it
    raised the score, below zero lowered it); None without the cue or when the window
    had too few voiced frames to judge."""

    margin: float
    probability: float
    logit: float
    phase_z: float | None = None


class VoiceCloneDetector:
    name = "voice_clone"

    def __init__(self, info: ModelInfo, phase: PhaseCue | None = None) -> None:
        if phase is not None and phase.pairs_with != info.version:
            raise ModelError(f"phase cue {phase.version} was fitted for {phase.pairs_with}, "
                             f"not {info.version}: refit it (models/fit_phase_cue.py) or set "
                             "phase_cue = false")
        self.info = info
        self.phase = phase

    @property
    def version(self) -> str:
        return self.info.version if self.phase is None else \
            f"{self.info.version}+{self.phase.version}"

    @property
    def calibration(self) -> Calibration:
        """What maps this detector's margin to log-odds: the pair's own with the cue."""
        return self.info.calibration if self.phase is None else self.phase.calibration

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

    def batch_runner(self, run: RunBatch) -> RunBatch:
        """What the batcher runs on prepared windows: the model's logits, and with the
        phase cue each window's phase z-score as one more column."""
        phase = self.phase
        if phase is None:
            return run

        def logits_and_phase(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            return np.column_stack([run(batch), phase.window_z(batch).astype(np.float32)])

        return logits_and_phase

    def score(self, row: npt.NDArray[np.float32]) -> WindowScore:
        """Read one row of :meth:`batch_runner`'s output."""
        bona = self.info.bonafide_index
        margin = float(row[1 - bona] - row[bona])
        cal = self.calibration
        if self.phase is None:
            logit = cal.a * margin + cal.b
            return WindowScore(margin, sigmoid(logit), logit)
        z = float(row[2])
        logit = cal.a * self.phase.fuse(margin, z) + cal.b
        return WindowScore(margin, sigmoid(logit), logit, None if math.isnan(z) else z)
