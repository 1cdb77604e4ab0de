"""Detection metrics shared by the benches: EER, error rates at a threshold, bootstrap CIs.

Convention: ``scores`` are "more synthetic" when higher; ``labels`` are 1 for
spoof (synthetic) and 0 for bona fide.
"""

from __future__ import annotations

import numpy as np


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate and the threshold where FPR and FNR cross."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n_pos, n_neg = labels.sum(), (1 - labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("EER needs both classes")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Thresholds at each distinct score: flag everything >= threshold as spoof.
    tp = np.cumsum(sorted_labels)
    fp = np.cumsum(1 - sorted_labels)
    distinct = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(scores) - 1]
    fnr = np.r_[1.0, 1 - tp[distinct] / n_pos]
    fpr = np.r_[0.0, fp[distinct] / n_neg]
    thresholds = np.r_[np.inf, sorted_scores[distinct]]
    i = int(np.argmin(np.abs(fnr - fpr)))
    # Interpolate between the two neighbouring operating points for a stable value.
    if i > 0 and (fnr[i] - fpr[i]) * (fnr[i - 1] - fpr[i - 1]) < 0:
        a, b = i - 1, i
        d_a, d_b = fnr[a] - fpr[a], fnr[b] - fpr[b]
        w = d_a / (d_a - d_b)
        value = fpr[a] + w * (fpr[b] - fpr[a])
        return float(value), float(thresholds[b])
    return float((fnr[i] + fpr[i]) / 2), float(thresholds[i])


def rates_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = np.asarray(scores) >= threshold
    labels = np.asarray(labels)
    fpr = float(flagged[labels == 0].mean()) if (labels == 0).any() else float("nan")
    fnr = float((~flagged[labels == 1]).mean()) if (labels == 1).any() else float("nan")
    return {"threshold": threshold, "fpr": fpr, "fnr": fnr,
            "n_bonafide": int((labels == 0).sum()), "n_spoof": int((labels == 1).sum())}


def bootstrap_eer(scores: np.ndarray, labels: np.ndarray, *, rounds: int = 1000,
                  seed: int = 0, groups: np.ndarray | None = None) -> tuple[float, float]:
    """95 % percentile interval of the EER, resampling within each class.

    With ``groups`` (e.g. speaker ids) whole groups are resampled, because
    clips of one speaker are not independent evidence.
    """
    rng = np.random.default_rng(seed)
    scores, labels = np.asarray(scores), np.asarray(labels)
    values = []
    for _ in range(rounds):
        idx = []
        for cls in (0, 1):
            members = np.nonzero(labels == cls)[0]
            if groups is None:
                idx.append(rng.choice(members, size=len(members)))
            else:
                keys = np.unique(groups[members])
                picked = rng.choice(keys, size=len(keys))
                idx.append(np.concatenate([members[groups[members] == k] for k in picked]))
        sample = np.concatenate(idx)
        values.append(eer(scores[sample], labels[sample])[0])
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def det_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) over all thresholds, for DET plots."""
    thresholds = np.unique(scores)
    fpr = np.array([(scores[labels == 0] >= t).mean() for t in thresholds])
    fnr = np.array([(scores[labels == 1] < t).mean() for t in thresholds])
    return fpr, fnr
