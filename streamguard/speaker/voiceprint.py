"""Running per-call voiceprint: one embedding per speech window, averaged as the call goes.

Why an uncertainty and not just a number: a voiceprint from two seconds of
speech is much less certain than one from a minute, and a policy that asks
for another factor ("step up") must know whether a 0.70 similarity is
0.70 ± 0.02 or 0.70 ± 0.15. The spread of the individual windows' similarity
to the reference tells us that: the interval shrinks as consistent windows
accumulate and widens when windows disagree (noise, a second talker).

The spread is estimated from the most recent windows (bounded memory per
call), shrunk towards a prior measured on 1.6 s partials of the shared GE2E
audio, so the first one or two windows get a wide interval rather than a
falsely narrow one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamguard.speaker.encoder import EMBEDDING_DIM

__all__ = ["RunningVoiceprint", "Similarity"]

Float32 = npt.NDArray[np.float32]

# Prior for the per-window spread of cosines. Same-speaker 1.6 s crops scatter with std
# ~0.06 around a voiceprint, but windows of one call are correlated, so that under-covered
# (~80 % for a nominal 95 %); 0.08 was chosen on the shared GE2E audio so the interval
# after 1-5 windows covers the full-utterance similarity (bench/speaker.py reports it).
PRIOR_WINDOW_STD = 0.08
PRIOR_WEIGHT = 2.0
Z95 = 1.96
PARTIAL_SECONDS = 1.6


@dataclass(frozen=True, slots=True)
class Similarity:
    """Cosine similarity of a voiceprint to a reference, with a ~95 % interval.

    ``n_windows``: speech windows behind the voiceprint; ``speech_seconds``:
    the speech they covered (overlapping windows counted once per hop).
    """

    value: float
    low: float
    high: float
    n_windows: int
    speech_seconds: float

    def as_dict(self) -> dict[str, float | int]:
        return {"value": round(self.value, 4), "low": round(self.low, 4),
                "high": round(self.high, 4), "n_windows": self.n_windows,
                "speech_seconds": round(self.speech_seconds, 2)}


class RunningVoiceprint:
    """Accumulates window embeddings of one call's voice.

    ``window_hop_s``: time between consecutive windows' starts; windows closer
    than 1.6 s overlap, share audio, and count as ``hop / 1.6`` of an
    independent observation each. ``history``: how many recent windows are
    kept to estimate the spread (each is 1 KiB).
    """

    def __init__(self, window_hop_s: float = PARTIAL_SECONDS, history: int = 64,
                 prior_std: float = PRIOR_WINDOW_STD, prior_weight: float = PRIOR_WEIGHT) -> None:
        if window_hop_s <= 0 or history < 2 or prior_std < 0 or prior_weight < 0:
            raise ValueError("need window_hop_s > 0, history >= 2, non-negative priors")
        self._independence = min(1.0, window_hop_s / PARTIAL_SECONDS)
        self._hop = window_hop_s
        self._sum = np.zeros(EMBEDDING_DIM, dtype=np.float64)
        self._weight = 0.0
        self._n = 0
        self._recent: deque[Float32] = deque(maxlen=history)
        self._prior_std = prior_std
        self._prior_weight = prior_weight

    @property
    def n_windows(self) -> int:
        return self._n

    @property
    def speech_seconds(self) -> float:
        if self._n == 0:
            return 0.0
        return PARTIAL_SECONDS + (self._n - 1) * min(self._hop, PARTIAL_SECONDS)

    def add(self, embedding: npt.ArrayLike, weight: float = 1.0) -> None:
        """Add one window's unit-length embedding; ``weight`` e.g. its speech fraction."""
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vector.shape != (EMBEDDING_DIM,):
            raise ValueError(f"expected a {EMBEDDING_DIM}-d embedding, got {vector.shape}")
        if not np.isfinite(vector).all() or not weight > 0:
            raise ValueError("embedding must be finite and weight positive")
        self._sum += weight * vector
        self._weight += weight
        self._n += 1
        self._recent.append(vector)

    def add_many(self, embeddings: npt.ArrayLike) -> None:
        for row in np.asarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM):
            self.add(row)

    def embedding(self) -> Float32 | None:
        """The unit-length voiceprint so far, or None before the first window."""
        if self._n == 0:
            return None
        norm = float(np.linalg.norm(self._sum))
        if norm == 0.0:
            return None
        return (self._sum / norm).astype(np.float32)

    def _mean_norm(self) -> float:
        """|mean of unit windows|: 1 when all windows agree, smaller as they scatter."""
        return float(np.linalg.norm(self._sum)) / self._weight if self._weight else 0.0

    def consistency(self) -> float:
        """Lowest cosine of a recent window to the voiceprint (low: another voice joined)."""
        voiceprint = self.embedding()
        if voiceprint is None:
            return float("nan")
        return float(min(float(v @ voiceprint) for v in self._recent))

    def similarity(self, reference: npt.ArrayLike) -> Similarity:
        """Similarity to ``reference`` (a unit-length voiceprint) with its uncertainty.

        The interval is ``value ± 1.96 · s / (sqrt(n_eff) · |mean|)``: ``s`` the
        spread of recent windows' similarities to the reference (with the
        prior), ``n_eff`` the number of independent windows, ``|mean|`` the
        length of the averaged embedding (the voiceprint's cosine is the mean
        window cosine divided by it, so its error is too). Cosines of these
        embeddings lie in [0, 1]; the interval is clipped to that range.
        """
        voiceprint = self.embedding()
        if voiceprint is None:
            raise ValueError("no speech windows yet")
        ref = np.asarray(reference, dtype=np.float64).reshape(-1)
        norm = float(np.linalg.norm(ref))
        if ref.shape != (EMBEDDING_DIM,) or norm == 0.0:
            raise ValueError(f"reference must be a non-zero {EMBEDDING_DIM}-d vector")
        ref = ref / norm
        value = float(voiceprint @ ref)
        sims = np.array([float(v @ ref) for v in self._recent])
        m = len(sims)
        squares = float(((sims - sims.mean()) ** 2).sum()) if m > 1 else 0.0
        k0 = self._prior_weight
        spread = math.sqrt((k0 * self._prior_std ** 2 + squares) / max(k0 + m - 1, 1e-9))
        n_eff = max(1.0, 1.0 + (self._n - 1) * self._independence)
        half = Z95 * spread / (math.sqrt(n_eff) * max(self._mean_norm(), 1e-6))
        return Similarity(value, max(0.0, value - half), min(1.0, value + half), self._n,
                          self.speech_seconds)
