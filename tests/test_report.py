"""Transparency report: counts from the audit log, policy in force, bench numbers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from gateway.cli import main
from streamguard.audit import AuditLog
from streamguard.events import Action, ActionKind, Notice, State, Verdict
from streamguard.policy import DEFAULT_POLICY, Policy, Rule
from streamguard.report import build_report, parse_since, render_markdown, wilson, write_report

EER_FIXTURE = {
    "corpus": {"files": 30, "bonafide": 10, "spoof": 20, "sources": ["a", "b"]},
    "models": {"shipped": {"version": "vc-test-1", "calibration": "platt", "wideband": {
        "all": {"eer_pct": 5.0, "eer_ci95_pct": [1.0, 12.5], "eer_threshold": 1.2,
                "operating_point": {"threshold": 1.35, "fpr": 0.1, "fnr": 0.05,
                                    "n_bonafide": 10, "n_spoof": 20}}}}},
    # The bench's newer section: FPR/FNR in percent with bootstrap intervals.
    "generated_test_split": {"protocol": "held-out split", "files": 40, "bonafide": 20,
                             "spoof": 20, "models": {"shipped": {"version": "vc-test-1",
        "mulaw8k": {"overall": {"eer_pct": 7.5, "eer_ci95_pct": [2.0, 15.0], "fpr_pct": 10.0,
                                "fpr_ci95_pct": [0.0, 25.0], "fnr_pct": 5.0,
                                "fnr_ci95_pct": [0.0, 15.0], "threshold_margin": 1.35,
                                "n_bonafide": 20, "n_spoof": 20},
                    "per_family": {"griffinlim": {"eer_pct": 30.0, "eer_ci95_pct": [20.0, 40.0],
                                                  "fnr_pct": 40.0, "fnr_ci95_pct": [25.0, 55.0],
                                                  "n_spoof": 10}}}}}},
    "unseen_families": {"protocol": "families it never saw", "shipped_trained_on": ["flite"],
                        "models": {"shipped": {"version": "vc-test-1", "wideband": {
                            "overall": {"eer_pct": 20.0},
                            "per_family": {"phase-vocoder": {
                                "eer_pct": 12.4, "eer_ci95_pct": [8.0, 17.0], "fnr_pct": 72.3,
                                "fnr_ci95_pct": [60.0, 80.0], "n_spoof": 242}}}}}},
    "leave_one_family_out_with_phase_cue": {
        "detector": "held-out CNN + rps-test", "protocol": "one family held out",
        "table": {"world-vc": {"n_spoof": 242, "n_bonafide": 210, "eer_pct_wideband": 8.6,
                               "eer_pct_mulaw8k": 8.5, "eer_ci95_pct_wideband": [3.1, 17.4],
                               "eer_ci95_pct_mulaw8k": [3.8, 18.4],
                               "eer_pct_cnn_alone_wideband": 28.1}}},
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=30)
        return self.now


def _verdict(stream: str, i: int, state: State, final: bool = False) -> dict:
    return Verdict(stream, "acme", i, i, i + 4.04, 1.0, 0.5, 0.5, (0.4, 0.6), state,
                   State.CLEAR if i else State.LISTENING, i + 1, "voice_clone", "vc-cnn-1.0.0",
                   final=final).to_dict()


def _action(stream: str, kind: ActionKind) -> dict:
    return Action(kind, stream, "acme", "hold-on-synthetic", "r", State.SYNTHETIC, 0.9,
                  (0.8, 0.95), 5.0, "default@1").to_dict()


@pytest.fixture
def log(tmp_path):
    log = AuditLog(tmp_path / "audit.sqlite3", clock=Clock())
    for i, state in enumerate([State.CLEAR, State.CLEAR, State.CLEAR]):
        log.append(_verdict("call-a", i, state))
    log.append(_verdict("call-a", 3, State.CLEAR, final=True))
    for i, state in enumerate([State.CLEAR, State.SUSPECT, State.SYNTHETIC]):
        log.append(_verdict("call-b", i, state))
    log.append(_action("call-b", ActionKind.WARN))
    log.append(_action("call-b", ActionKind.WARN))
    log.append(_action("call-b", ActionKind.HOLD))
    log.append(Notice("call-b", "window_dropped", "overload", 2.0).to_dict(), tenant="acme")
    log.append({"event": "voiceprint_erasure", "subject_id": "s1", "voiceprints_removed": 1})
    yield log
    log.close()


def test_report_counts_policy_and_bench(log, tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "eer.json").write_text(json.dumps(EER_FIXTURE))
    log.flush()
    report = build_report(log, bench_dir=bench)
    v = report["volumes"]
    assert v["sessions"] == 2 and v["verdicts"] == 7 and v["final_verdicts"] == 1
    assert v["verdicts_by_state"] == {"clear": 5, "suspect": 1, "synthetic": 1}
    assert v["sessions_by_last_state"] == {"clear": 1, "synthetic": 1}
    assert v["sessions_flagged_suspect_or_synthetic"] == 1
    assert v["windows_scored"] == 4 + 3
    assert v["actions_by_kind"] == {"hold": 1, "warn": 2}
    assert v["notices_by_kind"] == {"window_dropped": 1}
    assert v["voiceprint_erasures"] == 1
    assert report["models"]["versions_in_verdicts"] == {"vc-cnn-1.0.0": 7}
    assert report["audit_integrity"]["ok"] and report["audit_integrity"]["head"]["seq"] == 12
    assert report["policy"]["in_force"]["policy"] == DEFAULT_POLICY.to_dict()
    det = report["detection"]
    assert det["status"] == "measured" and len(det["rows"]) == 2
    row = det["rows"][0]
    assert (row["eer_pct"], row["eer_ci95_pct"], row["version"]) == (5.0, [1.0, 12.5],
                                                                     "vc-test-1")
    op = row["operating_point"]
    assert (op["false_positives"], op["n_bonafide"], op["false_negatives"]) == (1, 10, 1)
    assert op["fpr_ci95"] == pytest.approx(list(wilson(1, 10)))
    assert det["leave_one_source_out"] == "not measured"
    gen = det["rows"][1]
    assert (gen["corpus"], gen["eer_pct"]) == ("generated test split", 7.5)
    assert gen["operating_point"]["false_positives"] == 2
    assert gen["operating_point"]["fpr_ci95"] == [0.0, 0.25]  # the bench's bootstrap CI
    assert det["per_family"][0]["family"] == "griffinlim"
    md = render_markdown(report)
    assert "5.00 % [1.00, 12.50] %" in md and "10.00 % (1/10)" in md
    assert "hold-on-synthetic" in md  # the policy's rules are published
    assert "30.00 % [20.00, 40.00] %" in md
    unseen = det["unseen_families"]
    assert unseen["shipped_trained_on"] == ["flite"]
    assert [(f["family"], f["fnr_pct"]) for f in unseen["per_family"]] == [("phase-vocoder",
                                                                            72.3)]
    assert "never trained on" in md and "72.30 % [60.00, 80.00] %" in md
    paired = det["leave_one_family_out_with_phase_cue"]
    assert paired["families"]["world-vc"]["eer_ci95_pct_mulaw8k"] == [3.8, 18.4]
    assert "as the detector runs (held-out CNN + rps-test)" in md
    assert "| world-vc | 8.60 % [3.10, 17.40] % | 8.50 % [3.80, 18.40] % | 242 | 210 |" in md


def test_newer_policy_change_and_since(log, tmp_path):
    strict = Policy("strict", "7", (Rule("hold-suspect", State.SUSPECT, (ActionKind.WARN,)),))
    log.append({"type": "policy_change", "tenant": "acme", "policy": strict.to_dict(),
                "changed_by": "admin-key-1"})
    log.flush()
    report = build_report(log, since=log.tail(2)[0].time, bench_dir=tmp_path / "nothing")
    pol = report["policy"]["in_force"]
    assert pol["policy"]["name"] == "strict" and pol["seq"] == 13
    assert report["volumes"]["records"] == 2 and report["volumes"]["verdicts"] == 0
    assert report["detection"]["status"] == "not measured"
    assert "not measured" in render_markdown(report)


def test_wilson_and_since_parsing():
    assert wilson(0, 0) is None
    low, high = wilson(0, 20)
    assert low == 0.0 and 0.15 < high < 0.17
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-02-01", now) == datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("yesterday", now)


def test_report_command_writes_files(log, tmp_path, capsys):
    log.flush()
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "eer.json").write_text(json.dumps(EER_FIXTURE))
    out = tmp_path / "out"
    assert main(["report", "--db", str(log.path), "--out", str(out), "--bench-dir", str(bench),
                 "--html"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["volumes"]["actions"] == 3
    assert (out / "report.md").read_text().startswith("# StreamGuard transparency report")
    assert "<table>" in (out / "report.html").read_text()
    assert any(c["title"].startswith("Model card") for c in report["models"]["cards"])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib" in report["charts_note"]
    else:
        assert report["charts"] == ["verdicts.svg"]
        assert (out / "verdicts.svg").read_text().lstrip().startswith("<?xml")


def test_report_without_matplotlib(log, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    log.flush()
    report = build_report(log)
    write_report(report, tmp_path / "o")
    assert report["charts"] == [] and "matplotlib is not installed" in report["charts_note"]
    assert "matplotlib is not installed" in (tmp_path / "o" / "report.md").read_text()
