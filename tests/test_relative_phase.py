"""bench/relative_phase.py reads LOFO score files and fuses them as it says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import relative_phase as rp


def test_score_files_without_the_calibration_reference_are_refused(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("held_out,channel,key,label,family,margin\n"
                   "world-vc,wideband,a,0,librispeech,-1.0\n")
    with pytest.raises(SystemExit, match="split"):
        rp.read_scores(old)


def test_the_hinge_fusion_leaves_the_cnn_alone_until_the_phase_cue_is_sure():
    rng = np.random.default_rng(3)
    cal_cnn, cal_rps = rng.normal(0, 1, 200), rng.normal(5, 2, 200)
    cnn = np.array([0.5, 0.5, 0.5])
    rps = np.array([5.0, np.quantile(cal_rps, 0.5), 40.0])
    fused = rp.fusions(cal_cnn, cal_rps, cnn, rps, music=np.full(3, 100.0))
    z_cnn = (cnn - cal_cnn.mean()) / cal_cnn.std()
    z_rps = (rps - cal_rps.mean()) / cal_rps.std()
    assert np.allclose(fused["fused_hinge"][:2], z_cnn[:2])
    assert fused["fused_hinge"][2] > z_cnn[2] + 10
    assert np.allclose(fused["fused_plain_sum"], z_cnn + z_rps)
    # nothing like music: the runtime's sum is the weighted plain one, above zero only
    assert np.allclose(fused["fused"], z_cnn + rp.PHASE_WEIGHT * np.maximum(z_rps, 0))
    assert np.allclose(fused["fused_two_sided"], z_cnn + rp.PHASE_WEIGHT * z_rps)
    # music explains the last window: it adds nothing
    explained = rp.fusions(cal_cnn, cal_rps, cnn, rps, music=np.full(3, cal_rps.mean()))
    assert explained["fused"][2] == pytest.approx(z_cnn[2])


def test_windows_the_cue_cannot_judge_keep_the_cnn_score_in_every_fusion():
    rng = np.random.default_rng(4)
    cal_cnn, cal_rps = rng.normal(0, 1, 200), rng.normal(5, 2, 200)
    cal_rps[:20] = np.nan  # calibration windows with too few voiced frames set no scale
    cnn, rps = np.array([0.5, 0.5]), np.array([np.nan, 40.0])
    fused = rp.fusions(cal_cnn, cal_rps, cnn, rps, music=np.full(2, 100.0))
    z_cnn = (cnn - cal_cnn.mean()) / cal_cnn.std()
    assert len(fused) == 4
    for scores in fused.values():
        assert scores[0] == pytest.approx(z_cnn[0])
    assert np.isfinite(fused["fused"]).all() and fused["fused_hinge"][1] > z_cnn[1] + 10


def test_the_committed_lofo_rows_belong_to_the_shipped_cue_and_are_folded_into_eer_json():
    """A refit cue must be followed by a rerun of the rows (and bench.eer --lofo-only)."""
    from bench import eer as eer_bench

    folded = eer_bench.lofo_with_phase_cue_table()
    assert folded["detector"] == f"held-out CNN + {rp.shipped_cue().version}"
    committed = json.loads((eer_bench.OUT / "eer.json").read_text())
    assert committed["leave_one_family_out_with_phase_cue"] == folded
    for row in folded["table"].values():
        for channel in ("wideband", "mulaw8k"):
            low, high = row[f"eer_ci95_pct_{channel}"]
            assert low <= row[f"eer_pct_{channel}"] <= high


def _scores(path, held_out, margins):
    """A bench.loso --scores file: two calibration and two test files per channel."""
    lines = ["held_out,channel,split,key,label,family,margin"]
    for channel in ("wideband", "mulaw8k"):
        for (split, key, label), m in zip(
                [("calibration", "c1", 0), ("calibration", "c2", 0),
                 ("test", "g1", 0), ("test", "s1", 1)], margins, strict=True):
            lines.append(f"{held_out},{channel},{split},{key},{label},f,{m}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_ensemble_averages_each_members_margins_as_z_scores_of_its_own_calibration(tmp_path):
    narrow = _scores(tmp_path / "cv.csv", "channel-vocoder", [-1.0, 1.0, 0.0, 3.0])
    wide = _scores(tmp_path / "cv-seed1.csv", "channel-vocoder", [-10.0, 10.0, 10.0, -10.0])
    world = _scores(tmp_path / "world.csv", "world-vc", [0.0, 2.0, 1.0, 1.0])
    groups = rp.row_files([narrow, world, wide], ensemble=True)
    assert groups == {"channel-vocoder-ensemble2": [narrow, wide], "world-vc-ensemble1": [world]}
    assert rp.row_files([narrow, wide], ensemble=False) == {"cv": [narrow], "cv-seed1": [wide]}
    tables = [rp.read_scores(p) for p in groups["channel-vocoder-ensemble2"]]
    cal, test, cal_m, test_m = rp.mean_margins(tables, "mulaw8k")
    assert [r["key"] for r in test] == ["g1", "s1"] and len(cal) == 2
    # z-scores against both channels' calibration files: narrow (0, 3), wide (1, -1);
    # the wide member's scale does not win
    assert np.allclose(test_m, [0.5, 1.0])
    assert np.allclose(cal_m, [-1.0, 1.0])
    shifted = tmp_path / "cv-seed2.csv"
    shifted.write_text(wide.read_text().replace("mulaw8k,calibration,c1,0,f,-10.0",
                                                "mulaw8k,calibration,c1,0,f,-30.0"))
    _, _, cal_m, _ = rp.mean_margins([rp.read_scores(shifted)], "wideband")
    assert np.allclose(cal_m, [-10.0, 10.0])  # one model: its margins as scored
    _, _, cal_m, test_m = rp.mean_margins([rp.read_scores(narrow), rp.read_scores(shifted)],
                                          "wideband")
    reference = np.array([-10.0, 10.0, -30.0, 10.0])
    wide_z = (np.array([-10.0, 10.0, 10.0, -10.0]) - reference.mean()) / reference.std()
    assert np.allclose(test_m, (np.array([0.0, 3.0]) + wide_z[2:]) / 2)


def test_ensemble_members_scored_on_other_files_are_refused(tmp_path):
    a = _scores(tmp_path / "a.csv", "world-vc", [0.0, 1.0, 0.0, 1.0])
    b = tmp_path / "b.csv"
    b.write_text(a.read_text().replace("s1", "s9"))
    with pytest.raises(SystemExit, match="split-seed"):
        rp.mean_margins([rp.read_scores(a), rp.read_scores(b)], "wideband")


def test_the_committed_ensemble_rows_belong_to_the_shipped_cue_and_have_five_members():
    """A refit cue must be followed by a rerun of the ensemble rows too."""
    from bench import eer as eer_bench

    doc = json.loads((eer_bench.OUT / "phase_cue_lofo_ensemble.json").read_text())
    assert doc["fused_as_in"] == rp.shipped_cue().version
    rows = doc["fusion_with_loso_rows"]
    assert {"channel-vocoder-ensemble5", "world-vc-ensemble5"} <= set(rows)
    for name, row in rows.items():
        family = row["held_out"]
        assert name == f"{family}-ensemble5"
        assert row["members"] == [family] + [f"{family}-seed{s}" for s in range(1, 5)]
        for channel in ("wideband", "mulaw8k"):
            low, high = row[f"eer_ci95_pct_fused_{channel}"]
            assert low <= row[f"eer_pct_fused_{channel}"] <= high


def _row(family, members, eer):
    return {"held_out": family, "n_spoof": 10, "n_bonafide": 20, "members": members,
            **{f"{what}_{ch}": value for ch in ("wideband", "mulaw8k")
               for what, value in (("eer_pct_fused", eer), ("eer_ci95_pct_fused", [0.0, eer]),
                                   ("eer_pct_cnn", 2 * eer))}}


def test_an_ensemble_detector_folds_ensemble_rows_and_single_seeds_where_it_must(
        tmp_path, monkeypatch):
    from bench import eer as eer_bench

    single = {"fused_as_in": "rps-x", "protocol": "p", "fusion_with_loso_rows": {
        "world-vc": _row("world-vc", ["world-vc"], 9.0),
        "flite": _row("flite", ["flite"], 1.0)}}
    ensemble = {"fused_as_in": "rps-x", "protocol": "p", "fusion_with_loso_rows": {
        "world-vc-ensemble5": _row("world-vc", [f"w{s}" for s in range(5)], 4.0),
        "flite-ensemble3": _row("flite", ["a", "b", "c"], 0.5)}}
    for name, doc in (("single.json", single), ("ensemble.json", ensemble)):
        (tmp_path / name).write_text(json.dumps(doc))
    monkeypatch.setattr(eer_bench, "PHASE_LOFO", tmp_path / "single.json")
    monkeypatch.setattr(eer_bench, "PHASE_LOFO_ENSEMBLE", tmp_path / "ensemble.json")

    monkeypatch.setattr(eer_bench, "shipped_members", lambda: 5)
    table = eer_bench.lofo_with_phase_cue_table()["table"]
    assert (table["world-vc"]["n_cnn_members"], table["world-vc"]["eer_pct_mulaw8k"]) == (5, 4.0)
    # a three-member row is not the shipped detector: the single seed stands in, marked
    assert (table["flite"]["n_cnn_members"], table["flite"]["eer_pct_wideband"]) == (1, 1.0)
    assert table["flite"]["eer_pct_cnn_alone_wideband"] == 2.0

    monkeypatch.setattr(eer_bench, "shipped_members", lambda: 1)
    table = eer_bench.lofo_with_phase_cue_table()["table"]
    assert table["world-vc"]["n_cnn_members"] == 1 and table["world-vc"]["eer_pct_wideband"] == 9.0

    ensemble["fused_as_in"] = "rps-y"
    (tmp_path / "ensemble.json").write_text(json.dumps(ensemble))
    monkeypatch.setattr(eer_bench, "shipped_members", lambda: 5)
    with pytest.raises(SystemExit, match="different phase cues"):
        eer_bench.lofo_with_phase_cue_table()
