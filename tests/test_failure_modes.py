"""Non-speech calls through the live session API with the shipped model.

Measured in bench/failure_modes.py (bench/results/failure_modes.json) and
written up in streamguard/models/voice_clone.md: silence and comfort noise
never reach the model; DTMF key tones are taken out by the DTMF detector in
the speech gate; the hold chime does pass the WebRTC VAD gate and is scored,
yet must not drive a call to ``synthetic``.
"""

from __future__ import annotations

import asyncio
import copy
import json

import numpy as np
import pytest

from bench.failure_modes import (
    GATE,
    HOLD_PROMPT,
    OUT,
    Call,
    dtmf,
    floor_noise,
    gate,
    load16,
    play,
    to8k,
)
from streamguard import Guard, GuardConfig, State
from streamguard.config import bundled_model_path

SR = 16000


def run_calls(calls: list[Call]) -> list[dict]:
    async def go() -> list[dict]:
        async with Guard.from_config(GuardConfig(model_path=bundled_model_path())) as guard:
            return [await play(guard, f"t-{i}", c) for i, c in enumerate(calls)]

    return asyncio.run(go())


def phone(name: str, x16: np.ndarray) -> Call:
    return Call(name, to8k(x16), 8000, ulaw=True)


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    rng = np.random.default_rng(0)
    n = 10 * SR
    hold = load16(HOLD_PROMPT)
    calls = [
        phone("silence", np.zeros(n, np.float32)),
        phone("comfort-noise", floor_noise(n, rng, -65.0)),
        phone("dtmf-card", dtmf("4929123456781234#", rng)),
        phone("dtmf-keys", dtmf("123A456B789C*0#D" * 2, rng)),
        phone("hold-chime", np.tile(hold, n // len(hold) + 1)[:n]),
    ]
    return {r["call"]: r for r in run_calls(calls)}


@pytest.mark.parametrize("name", ["silence", "comfort-noise"])
def test_silence_is_never_scored(results, name):
    r = results[name]
    assert r["windows_cut"] >= 8, r  # the windower did run over the call
    assert r["windows_scored"] == 0, r
    assert r["worst_state"] == State.LISTENING and r["final_state"] == State.LISTENING, r


@pytest.mark.parametrize("name", ["dtmf-card", "dtmf-keys", "hold-chime"])
def test_tones_do_not_reach_synthetic(results, name):
    r = results[name]
    assert r["worst_state"] != State.SYNTHETIC and r["final_state"] != State.SYNTHETIC, r


def test_hold_chime_stays_clear(results):
    r = results["hold-chime"]
    assert r["windows_scored"] > 0, "the chime passes the VAD gate (measured); update the card"
    assert r["worst_state"] == State.CLEAR, r
    assert max(r["window_p"]) < 0.5, r


def test_dtmf_is_not_scored(results):
    for name in ("dtmf-card", "dtmf-keys"):
        assert results[name]["windows_scored"] == 0, results[name]


@pytest.fixture(scope="module")
def bench_run() -> dict:
    return json.loads(OUT.read_text())


def test_shipped_model_passed_the_release_gate(bench_run):
    """A model ships only with a failure-mode run of its own that meets GATE (with the
    phase cue fitted for it, as the default Guard runs it)."""
    assert bench_run["model"] == Guard.from_config(GuardConfig()).detector.version
    assert gate(bench_run["conditions"]) == []
    assert bench_run["gate"] == {"limits": GATE, "passed": True, "violations": []}


def test_gate_rejects_a_model_that_flags_noisy_callers(bench_run):
    conds = copy.deepcopy(bench_run["conditions"])
    babble = conds["genuine + babble 5 dB"]
    babble["fraction_windows_p_ge_0.5"] = 0.147  # candidate B of the model card
    babble["calls_reaching_suspect_or_synthetic"] = 2
    found = gate(conds)
    assert any("babble 5 dB: 14.7 % of windows" in v for v in found), found
    assert any("babble 5 dB: 2 of 4 calls" in v for v in found), found


def test_gate_rejects_a_model_that_misses_the_synthetic_controls(bench_run):
    conds = copy.deepcopy(bench_run["conditions"])
    control = next(r for r in conds.values() if r["kind"] == "synthetic")
    control["fraction_windows_p_ge_0.5"] = 0.5
    control["final_states"] = {"suspect": 1}
    assert len(gate(conds)) == 2


def test_gate_counts_alarmed_genuine_calls_over_the_whole_bench(bench_run):
    conds = copy.deepcopy(bench_run["conditions"])
    genuine = [r for r in conds.values() if r["kind"] == "genuine"]
    for r in genuine:  # one alarmed call per condition: each within its own limit
        r["calls_reaching_suspect_or_synthetic"] = 1
    found = gate(conds)
    assert len(found) == 1 and found[0].startswith("genuine calls:"), found
