import pytest

from streamguard.calibration import calibration_sd, sigmoid
from streamguard.events import State
from streamguard.fusion import FusionConfig, StreamFusion


def fusion(**kw):
    return StreamFusion(FusionConfig(**kw), calibration_sd=0.1, window_seconds=4.04,
                        hop_seconds=1.0)


def test_first_window_leaves_listening_and_interval_contains_estimate():
    f = fusion()
    est = f.add(-3.0)
    assert est.previous_state is State.LISTENING and est.state is State.CLEAR
    low, high = est.interval
    assert low < est.probability < high
    assert est.probability == pytest.approx(sigmoid(-3.0))


def test_interval_narrows_as_consistent_evidence_accumulates():
    f = fusion(horizon=50)
    widths = []
    for _ in range(20):
        low, high = f.add(4.0).interval
        widths.append(high - low)
    assert widths[-1] < widths[0] / 2
    assert f.state is State.SYNTHETIC


def test_one_odd_window_does_not_flip_the_state():
    f = fusion()
    for _ in range(6):
        f.add(-4.0)
    assert f.state is State.CLEAR
    est = f.add(8.0)
    assert est.state is State.CLEAR
    f.add(-4.0)
    assert f.state is State.CLEAR


def test_sustained_change_flips_with_hysteresis():
    f = fusion()
    for _ in range(4):
        f.add(-4.0)
    states = [f.add(5.0).state for _ in range(8)]
    assert states[0] is State.CLEAR and states[-1] is State.SYNTHETIC
    # falling back needs the probability below the exit threshold, not just below enter
    f2 = fusion(horizon=1)
    for _ in range(3):
        f2.add(5.0)
    assert f2.state is State.SYNTHETIC
    for _ in range(3):
        f2.add(sigmoid_inverse(0.75))
    assert f2.state is State.SYNTHETIC
    for _ in range(2):
        f2.add(sigmoid_inverse(0.4))
    assert f2.state is State.SUSPECT


def sigmoid_inverse(p):
    import math

    return math.log(p / (1 - p))


def test_overall_uses_all_windows():
    f = fusion(horizon=2)
    for logit in (-4.0, -4.0, -4.0, 4.0, 4.0):
        f.add(logit)
    overall = f.overall()
    assert overall is not None
    assert overall.probability == pytest.approx(sigmoid(-0.8))
    assert fusion().overall() is None


def test_calibration_error_model():
    assert calibration_sd("none", 500) == 1.0
    assert calibration_sd("platt", 400) == pytest.approx(0.1)


def test_config_validation():
    with pytest.raises(ValueError):
        FusionConfig(suspect_enter=0.9, synthetic_enter=0.8)
    with pytest.raises(ValueError):
        FusionConfig(horizon=0)
