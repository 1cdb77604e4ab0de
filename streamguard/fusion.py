"""Fuse window scores into a calibrated probability, an interval and a state.

Per window the detector gives a calibrated logit ``l = a*margin + b``. The
stream's live estimate is the mean of the last ``horizon`` logits; averaging
logits (rather than multiplying likelihoods) is deliberate, because
overlapping windows see the same audio and are far from independent.

The interval accounts for two things: the spread of the window logits,
pooled with a prior spread so that one window alone yields a wide interval,
divided by the number of *effectively independent* windows (the audio span
covered divided by the window length); and the calibration's own error, taken
as the standard error of a logistic intercept fitted on ``n`` samples,
``2/sqrt(n)`` (1.0 for an uncalibrated model).

States change with hysteresis and need ``confirm_windows`` consecutive votes,
so one odd window cannot flip a verdict; ``listening`` ends at the first
scored window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from streamguard.calibration import sigmoid
from streamguard.events import State


@dataclass(frozen=True, slots=True)
class FusionConfig:
    horizon: int = 6
    confidence: float = 0.90
    prior_logit_sd: float = 2.0
    suspect_enter: float = 0.5
    suspect_exit: float = 0.35
    synthetic_enter: float = 0.85
    synthetic_exit: float = 0.7
    confirm_windows: int = 2

    def __post_init__(self) -> None:
        order = (self.suspect_exit, self.suspect_enter, self.synthetic_exit, self.synthetic_enter)
        if list(order) != sorted(order):
            raise ValueError("thresholds must rise: suspect_exit, suspect_enter, "
                             "synthetic_exit, synthetic_enter")
        if self.horizon < 1 or self.confirm_windows < 1 or not 0 < self.confidence < 1:
            raise ValueError("horizon and confirm_windows must be >= 1, confidence in (0, 1)")


@dataclass(frozen=True, slots=True)
class Estimate:
    probability: float
    interval: tuple[float, float]
    state: State
    previous_state: State


class StreamFusion:
    """Evidence of one stream; ``window_seconds``/``hop_seconds`` size the overlap."""

    def __init__(self, config: FusionConfig, *, calibration_sd: float,
                 window_seconds: float, hop_seconds: float) -> None:
        self.config = config
        self._cal_sd = calibration_sd
        self._window_s = window_seconds
        self._hop_s = hop_seconds
        self._z = NormalDist().inv_cdf(0.5 + config.confidence / 2)
        self._logits: list[float] = []
        self.state = State.LISTENING
        self._candidate: State | None = None
        self._votes = 0

    @property
    def windows(self) -> int:
        return len(self._logits)

    def add(self, logit: float) -> Estimate:
        self._logits.append(logit)
        p, interval = self._estimate(self._logits[-self.config.horizon:])
        previous = self.state
        self._vote(self._target(p, interval[0]))
        return Estimate(p, interval, self.state, previous)

    def overall(self) -> Estimate | None:
        """Whole-stream estimate for the final verdict (no hysteresis)."""
        if not self._logits:
            return None
        p, interval = self._estimate(self._logits)
        state = self._target(p, interval[0], current=State.CLEAR)
        return Estimate(p, interval, state, self.state)

    def _estimate(self, logits: list[float]) -> tuple[float, tuple[float, float]]:
        n = len(logits)
        mean = sum(logits) / n
        sample_var = sum((x - mean) ** 2 for x in logits) / (n - 1) if n > 1 else 0.0
        pooled_var = (self.config.prior_logit_sd**2 + (n - 1) * sample_var) / n
        span = self._window_s + (n - 1) * self._hop_s
        n_eff = max(1.0, span / self._window_s)
        se = math.sqrt(pooled_var / n_eff + self._cal_sd**2)
        low, high = sigmoid(mean - self._z * se), sigmoid(mean + self._z * se)
        return sigmoid(mean), (low, high)

    def _target(self, p: float, low: float, current: State | None = None) -> State:
        cfg = self.config
        current = self.state if current is None else current
        if p >= cfg.synthetic_enter and low >= 0.5:
            return State.SYNTHETIC
        if current is State.SYNTHETIC and p >= cfg.synthetic_exit:
            return State.SYNTHETIC
        if p >= cfg.suspect_enter:
            return State.SUSPECT
        if current in (State.SUSPECT, State.SYNTHETIC) and p >= cfg.suspect_exit:
            return State.SUSPECT
        return State.CLEAR

    def _vote(self, target: State) -> None:
        if self.state is State.LISTENING:
            self.state = target
            return
        if target is self.state:
            self._candidate, self._votes = None, 0
            return
        if target is self._candidate:
            self._votes += 1
        else:
            self._candidate, self._votes = target, 1
        if self._votes >= self.config.confirm_windows:
            self.state, self._candidate, self._votes = target, None, 0

