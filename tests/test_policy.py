import pytest

from streamguard import ActionKind, Policy, State, Verdict
from streamguard.policy import DEFAULT_POLICY, PolicyEngine, Rule


def verdict(state, p, low, end, final=False):
    return Verdict(stream_id="s", tenant="t", seq=1, start=end - 4, end=end, raw_score=0.0,
                   window_probability=p, probability=p, interval=(low, min(1.0, p + 0.05)),
                   state=state, previous_state=State.CLEAR, windows_scored=3,
                   detector="voice_clone", model_version="v", final=final)


def test_default_policy_warns_holds_and_releases():
    engine = PolicyEngine(DEFAULT_POLICY)
    assert engine.evaluate(verdict(State.CLEAR, 0.1, 0.05, 3)) == []
    warn = engine.evaluate(verdict(State.SUSPECT, 0.6, 0.3, 4))
    assert [a.kind for a in warn] == [ActionKind.WARN]
    assert warn[0].text and warn[0].policy_version == "default@1"
    assert engine.evaluate(verdict(State.SUSPECT, 0.6, 0.3, 5)) == []  # cooldown
    # synthetic but not confident enough: no hold
    assert engine.evaluate(verdict(State.SYNTHETIC, 0.9, 0.6, 6)) == []
    hold = engine.evaluate(verdict(State.SYNTHETIC, 0.95, 0.8, 7))
    assert [a.kind for a in hold] == [ActionKind.WARN, ActionKind.HOLD] and engine.on_hold
    release = engine.evaluate(verdict(State.CLEAR, 0.2, 0.1, 20))
    assert [a.kind for a in release] == [ActionKind.RELEASE] and not engine.on_hold
    assert engine.evaluate(verdict(State.SYNTHETIC, 0.95, 0.8, 50, final=True)) == []


def test_disclosed_synthetic_is_labelled_never_held():
    engine = PolicyEngine(DEFAULT_POLICY)
    actions = engine.evaluate(verdict(State.DISCLOSED_SYNTHETIC, 0.99, 0.95, 5))
    assert [a.kind for a in actions] == [ActionKind.LABEL]
    with pytest.raises(ValueError, match="never held"):
        Policy("bad", "1", (Rule("x", State.DISCLOSED_SYNTHETIC, (ActionKind.HOLD,)),))


def test_policy_round_trips_through_its_published_form():
    published = DEFAULT_POLICY.to_dict()
    assert Policy.from_dict(published) == DEFAULT_POLICY
    assert published["rules"][0]["actions"] == ["warn"]
    with pytest.raises(ValueError, match="invalid policy"):
        Policy.from_dict({"name": "x", "version": "1", "rules": [{"name": "r"}]})
