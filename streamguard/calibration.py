"""Probability helpers shared by detectors and fusion."""

from __future__ import annotations

import math


def sigmoid(x: float) -> float:
    """Numerically safe logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def calibration_sd(method: str, n: int) -> float:
    """Logit-scale error of a Platt fit on ``n`` samples: ``2/sqrt(n)``.

    That is the standard error of a logistic intercept where p = 0.5, the
    worst case; an uncalibrated model gets a full logit unit.
    """
    if method == "none" or n <= 0:
        return 1.0
    return 2.0 / math.sqrt(n)
