import numpy as np
import pytest

from bench.metrics import bootstrap_eer, eer, rates_at


def test_eer_of_separable_and_inverted_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert eer(np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), labels)[0] == 0.0
    assert eer(np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), labels)[0] == 1.0


def test_eer_matches_crossing_of_error_rates():
    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0, 1, 2000), rng.normal(2, 1, 2000)]
    labels = np.r_[np.zeros(2000, int), np.ones(2000, int)]
    value, threshold = eer(scores, labels)
    assert value == pytest.approx(0.1587, abs=0.015)  # Phi(-1) for unit normals 2 apart
    rates = rates_at(scores, labels, threshold)
    assert abs(rates["fpr"] - rates["fnr"]) < 0.01
    low, high = bootstrap_eer(scores, labels, rounds=100)
    assert low < value < high


def test_eer_needs_both_classes():
    with pytest.raises(ValueError):
        eer(np.array([0.1, 0.2]), np.array([0, 0]))
