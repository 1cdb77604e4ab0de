"""Relative phase shift (RPS) as a genuine-only cue, fused with leave-one-family-out CNN margins.

Voiced speech is a sum of harmonics of F0. Shifting an analysis window by τ
turns the phase φ_k of harmonic k into φ_k − 2πk·f0·τ, so the relative phase
shift RPS_k = φ_k − k·φ_1 does not depend on where the window sits: it is the
shape of the glottal pulse and the vocal tract, frame by frame (Saratxaga,
Hernaez et al., "Synthetic speech detection using phase information",
Speech Communication 2016). Vocoders that rebuild the excitation from an F0
track set these phases by rule — zero or fixed offsets (harmonic plus noise),
minimum phase (source-filter), random (magnitude-only resynthesis) — and
each rule leaves a distribution natural speech does not have, in one
direction or the other.

A classifier trained on the spoof families learns the direction of the ones
it saw (random phases read as synthetic), so harmonic-plus-noise, whose
phases are *more* regular than speech, scores as genuine. The cue here is
therefore one-class: a Gaussian of per-window RPS statistics fitted on the
genuine *training* speech only, scored as the log Mahalanobis distance. It
never sees a spoof, so every spoof family is unseen by it.

``--shipped`` does the same for the shipped model (vc-cnn-1.0.0) on its own
split (models/splits.json): every file of the spoof families it was not
trained on, and the test-split files of those it was, against the genuine
test files.

This bench reads `bench.loso --scores` CSVs (the CNN margins of one held-out
family, with the genuine calibration files as reference), and reports for
each the held-out EER of the CNN alone, of the RPS distance alone, and of
their fusion: both normalised to z-scores by the genuine *calibration* files
(no test file sets a scale), then summed as the runtime sums them, the phase
z-score's excess over natural audio weighted (``fit_phase_cue.PHASE_WEIGHT``:
``fused``, the rule that ships since rps-1.2.0), or two-sided, phases more
typical than average counting against (``fused_two_sided``, rps-1.1.0), with
equal weight and no music model (``fused_plain_sum``), or the phase z-score
counted only above its genuine 90th percentile (``fused_hinge``, rps-1.0.0).

``--ensemble`` reads CSVs of one held-out family scored with different
training seeds (``bench.loso --seed S --split-seed 0``) as members of one
detector: each member's margins become z-scores against its own genuine
calibration files (both channels, as models/voice_clone_net.SeedEnsemble
does at run time), their mean is the ensemble's margin, and that is fused
like a single model's. A training seed moves a held-out row by up to 11
points (the channel vocoder: 5.3-16.7 %), so one seed's row says little.

    nice -n 5 .venv/bin/python -m bench.relative_phase [CSV ...] [--ensemble] \
        [--shipped] [--cache FILE.npz] [--out bench/results/relative_phase.json]

Needs the generated corpus and the dev extra (for the split and the channel
simulation of models/train_voice_clone.py); uses numpy only for the cue.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.metrics import bootstrap_eer, eer
from streamguard.config import bundled_model_path
from streamguard.detectors.phase_cue import (
    GenuinePhaseModel,
    PhaseCue,
    excess_z,
    load_beside,
    window_features,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "models"))

import train_voice_clone as tvc  # noqa: E402
from fit_phase_cue import PHASE_WEIGHT, cnn_margins, model_split  # noqa: E402

OUT = REPO / "bench" / "results" / "relative_phase.json"

HINGE_QUANTILE = 0.9  # the hinge counts the phase z-score only above this genuine quantile

Features = Callable[[str, list[str]], np.ndarray]  # (channel, corpus keys) -> window statistics


def fit_genuine_model(features: Features, keys: list[str]) -> GenuinePhaseModel:
    """The genuine model of ``keys``' windows, wideband and μ-law together."""
    return GenuinePhaseModel.fit(np.vstack([features(ch, keys) for ch in ("wideband", "mulaw8k")]))


def read_scores(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "split" not in rows[0]:
        raise SystemExit(f"error: {path} has no 'split' column: rerun bench.loso --scores "
                         "(the genuine calibration files are the fusion's reference)")
    return rows


def row_files(paths: list[Path], ensemble: bool) -> dict[str, list[Path]]:
    """The rows to report and their score files: one row per file, or with
    ``ensemble`` one per held-out family, its files the members (training seeds)."""
    if not ensemble:
        return {path.stem: [path] for path in paths}
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(read_scores(path)[0]["held_out"], []).append(path)
    return {f"{family}-ensemble{len(members)}": members for family, members in groups.items()}


def margins_of(table: list[dict], channel: str, like: list[dict]) -> np.ndarray:
    """``table``'s margins of the files of ``like``, in its order; an error if a file
    is missing (members scored on different splits cannot be averaged)."""
    by_key = {r["key"]: float(r["margin"]) for r in table if r["channel"] == channel}
    missing = [r["key"] for r in like if r["key"] not in by_key]
    if missing:
        raise SystemExit(f"error: ensemble members were scored on different files "
                         f"({missing[0]} and {len(missing) - 1} more missing): use one "
                         "bench.loso --split-seed for all of them")
    return np.array([by_key[r["key"]] for r in like])


def mean_margins(tables: list[list[dict]], channel: str
                 ) -> tuple[list[dict], list[dict], np.ndarray, np.ndarray]:
    """The calibration and test rows of ``channel`` and their CNN margins: one model's
    as scored, or an ensemble's, the mean of each member's margins as a z-score against
    its own genuine calibration files, both channels together as the shipped ensemble
    does (it cannot know the channel). Members differ in scale, so a raw mean would let
    the widest decide."""
    first = tables[0]

    def rows(channel: str, split: str) -> list[dict]:
        return [r for r in first if r["channel"] == channel and r["split"] == split]

    cal, test = rows(channel, "calibration"), rows(channel, "test")
    if len(tables) == 1:
        return cal, test, margins_of(first, channel, cal), margins_of(first, channel, test)
    references = [np.concatenate([margins_of(t, ch, rows(ch, "calibration"))
                                  for ch in ("wideband", "mulaw8k")]) for t in tables]
    return (cal, test,
            tvc.ensemble_margins([margins_of(t, channel, cal) for t in tables], references),
            tvc.ensemble_margins([margins_of(t, channel, test) for t in tables], references))


def z_by(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """z-scores against the reference's judged (non-NaN) values."""
    return (values - np.nanmean(reference)) / (np.nanstd(reference) + 1e-9)


def no_opinion(judged: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The cue alone: a window it cannot judge (NaN) scores as the median genuine
    ``reference`` window, neither for nor against."""
    return np.where(np.isnan(judged), np.nanmedian(reference), judged)


def hinge(z_cnn: np.ndarray, z_phase: np.ndarray, floor: float) -> np.ndarray:
    """The CNN's z-score plus the phase z-score only where it exceeds ``floor``: the
    cue speaks only when it is sure (rps-1.0.0 shipped this rule). NaN phase (too few
    voiced frames to judge) adds nothing."""
    return z_cnn + np.maximum(0.0, np.nan_to_num(z_phase, nan=floor) - floor)


def fusions(cal_cnn: np.ndarray, cal_rps: np.ndarray, cnn: np.ndarray,
            rps: np.ndarray, music: np.ndarray) -> dict[str, np.ndarray]:
    """Fusions of z-scores normalised by the genuine calibration files: the sum as
    the runtime makes it, PHASE_WEIGHT times the phase z-score's excess over natural
    audio (``excess_z``: ``fused``); the same with phases more typical than average
    counting against (``fused_two_sided``, rps-1.1.0); the equal-weight sum without
    the music model (``fused_plain_sum``, stop 23's candidate); and the CNN plus only
    the part of the phase z-score above its genuine 90th percentile (``fused_hinge``,
    rps-1.0.0). ``rps`` and ``cal_rps`` are judged distances from the genuine speech
    model, ``music`` the distances of ``rps``'s windows from the music model: NaN
    (too few voiced frames) adds nothing."""
    z_cnn, z_rps = z_by(cal_cnn, cnn), z_by(cal_rps, rps)
    z_excess = excess_z(z_rps, z_by(cal_rps, music))
    floor = float(np.nanquantile(z_by(cal_rps, cal_rps), HINGE_QUANTILE))
    return {"fused": z_cnn + PHASE_WEIGHT * np.nan_to_num(z_excess),
            "fused_two_sided": z_cnn + PHASE_WEIGHT * np.nan_to_num(
                np.where(z_rps <= 0, z_rps, z_excess)),
            "fused_plain_sum": z_cnn + np.nan_to_num(z_rps),
            "fused_hinge": hinge(z_cnn, z_rps, floor)}


def summary(e: dict) -> str:
    return (f"EER wideband / μ-law: CNN {e['eer_pct_cnn_wideband']:.1f} / "
            f"{e['eer_pct_cnn_mulaw8k']:.1f}, RPS {e['eer_pct_rps_wideband']:.1f} / "
            f"{e['eer_pct_rps_mulaw8k']:.1f}, fused {e['eer_pct_fused_wideband']:.1f} / "
            f"{e['eer_pct_fused_mulaw8k']:.1f}, two-sided "
            f"{e['eer_pct_fused_two_sided_wideband']:.1f} / "
            f"{e['eer_pct_fused_two_sided_mulaw8k']:.1f}, plain sum "
            f"{e['eer_pct_fused_plain_sum_wideband']:.1f} / "
            f"{e['eer_pct_fused_plain_sum_mulaw8k']:.1f}, hinge "
            f"{e['eer_pct_fused_hinge_wideband']:.1f} / "
            f"{e['eer_pct_fused_hinge_mulaw8k']:.1f}")


def eers(y: np.ndarray, scores: dict[str, np.ndarray], channel: str) -> dict:
    return {f"eer_pct_{name}_{channel}": round(100 * eer(s, y)[0], 2)
            for name, s in scores.items()}


def shipped_cue() -> PhaseCue:
    """The phase cue that ships beside the bundled model; its music model is the one
    every fusion here uses (refitting it would give the same Gaussian)."""
    cue = load_beside(bundled_model_path())
    if cue is None:
        raise SystemExit("error: no shipped phase cue: run models/fit_phase_cue.py")
    return cue


def shipped_fusion(items: dict, features: Features) -> dict:
    """The shipped model's margins fused with the cue, on the model's own split: the
    bench's per-channel fusions, and the shipped cue as it runs (its own references,
    calibration and voicing gate, ``shipped_cue``) with its error rates at P = 0.5."""
    from streamguard.detectors import VoiceCloneDetector
    from streamguard.inference import OnnxModel

    split_of = model_split(items, bundled_model_path())
    model = OnnxModel(bundled_model_path())
    cue = shipped_cue()
    detector = VoiceCloneDetector(model.info, cue)
    trained = set(model.info.extra.get("trained_families", []))

    def margins(keys: list[str], channel: str) -> np.ndarray:
        return cnn_margins(model, tvc.channel_windows([items[k] for k in keys], channel))

    def shipped_logits(keys: list[str], channel: str, cnn: np.ndarray) -> np.ndarray:
        z = cue.judged_z(features(channel, keys))
        cal = detector.calibration
        return np.array([cal.a * cue.fuse(m, zz) + cal.b for m, zz in zip(cnn, z, strict=True)])

    def music(keys: list[str], channel: str) -> np.ndarray:
        return cue.music.distance(features(channel, keys))

    genuine = {split: [k for k, it in items.items() if it.label == 0 and split_of[k] == split]
               for split in ("train", "calib", "test")}
    phase = fit_genuine_model(features, genuine["train"])
    families = sorted({it.family for it in items.values() if it.label == 1})
    out: dict = {"model": detector.version, "trained_families": sorted(trained),
                 "n_bonafide": len(genuine["test"]), "families": {}}
    for channel in ("wideband", "mulaw8k"):
        cal_cnn = margins(genuine["calib"], channel)
        cal_rps = phase.judged_distance(features(channel, genuine["calib"]))
        g_cnn = margins(genuine["test"], channel)
        g_judged = phase.judged_distance(features(channel, genuine["test"]))
        g_music = music(genuine["test"], channel)
        g_shipped = shipped_logits(genuine["test"], channel, g_cnn)
        out[f"fpr_pct_shipped_cue_{channel}"] = round(100 * float(np.mean(g_shipped >= 0)), 2)
        out[f"fpr_pct_cnn_{channel}"] = round(100 * float(np.mean(
            model.info.calibration.a * g_cnn + model.info.calibration.b >= 0)), 2)
        for fam in families:
            keys = [k for k, it in items.items() if it.label == 1 and it.family == fam
                    and (fam not in trained or split_of[k] == "test")]
            s_cnn = margins(keys, channel)
            cnn = np.r_[g_cnn, s_cnn]
            judged = np.r_[g_judged, phase.judged_distance(features(channel, keys))]
            rps = no_opinion(judged, cal_rps)
            s_shipped = shipped_logits(keys, channel, s_cnn)
            y = np.r_[np.zeros(len(g_cnn)), np.ones(len(keys))].astype(int)
            entry = out["families"].setdefault(fam, {"n_spoof": len(keys),
                                                     "seen_by_cnn": fam in trained})
            entry.update(eers(y, {"cnn": cnn, "rps": rps,
                                  **fusions(cal_cnn, cal_rps, cnn, judged,
                                            np.r_[g_music, music(keys, channel)]),
                                  "shipped_cue": np.r_[g_shipped, s_shipped]}, channel))
            entry[f"fnr_pct_shipped_cue_{channel}"] = round(100 * float(np.mean(s_shipped < 0)), 2)
            entry[f"fnr_pct_cnn_{channel}"] = round(100 * float(np.mean(
                model.info.calibration.a * s_cnn + model.info.calibration.b < 0)), 2)
    for fam, e in out["families"].items():
        print(f"shipped {fam:18s} {'seen' if e['seen_by_cnn'] else 'unseen':6s} {summary(e)}, "
              f"shipped cue {e['eer_pct_shipped_cue_wideband']:.1f} / "
              f"{e['eer_pct_shipped_cue_mulaw8k']:.1f}")
    print(f"genuine test files at P >= 0.5 (wideband / μ-law): CNN "
          f"{out['fpr_pct_cnn_wideband']} / {out['fpr_pct_cnn_mulaw8k']} %, shipped cue "
          f"{out['fpr_pct_shipped_cue_wideband']} / {out['fpr_pct_shipped_cue_mulaw8k']} %")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="RPS one-class cue fused with LOFO margins")
    ap.add_argument("scores", type=Path, nargs="*", help="bench.loso --scores CSVs")
    ap.add_argument("--split-seed", type=int, default=0,
                    help="the split the CSVs were scored on (bench.loso --split-seed)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep every window's RPS statistics in this .npz (≈ 0.1 s a window "
                         "to compute), so a rerun with more CSVs only scores the margins")
    ap.add_argument("--ensemble", action="store_true",
                    help="score files of one held-out family are seeds of an ensemble: "
                         "one row each, the mean of the members' z-scored margins")
    ap.add_argument("--shipped", action="store_true",
                    help="also fuse the shipped model's margins, on its own split")
    args = ap.parse_args(argv)
    t0 = time.time()
    items = {it.key: it for it in tvc.load_all(tvc.gather(True, args.split_seed))}
    cache: dict[tuple[str, str], np.ndarray] = {}
    if args.cache is not None and args.cache.exists():
        with np.load(args.cache) as stored:
            cache = {tuple(name.split("|", 1)): stored[name] for name in stored.files}

    def features(channel: str, keys: list[str]) -> np.ndarray:
        todo = [k for k in keys if (channel, k) not in cache]
        for k, w in zip(todo, tvc.channel_windows([items[k] for k in todo], channel),
                        strict=True):
            cache[(channel, k)] = window_features(w)
        return np.array([cache[(channel, k)] for k in keys])

    genuine_train = [k for k, it in items.items() if it.split == "train" and it.label == 0]
    model = fit_genuine_model(features, genuine_train)
    tvc.log(f"genuine RPS model: {len(genuine_train)} training files x 2 channels "
            f"({time.time() - t0:.0f} s)")
    cue = shipped_cue()
    rows_out: dict = {}
    for row, paths in row_files(args.scores, args.ensemble).items():
        tables = [read_scores(path) for path in paths]
        for channel in ("wideband", "mulaw8k"):
            cal, test, cnn_cal, cnn = mean_margins(tables, channel)
            y = np.array([int(r["label"]) for r in test])
            test_features = features(channel, [r["key"] for r in test])
            judged = model.judged_distance(test_features)
            rps_cal = model.judged_distance(features(channel, [r["key"] for r in cal]))
            rps = no_opinion(judged, rps_cal)
            entry = rows_out.setdefault(row, {"held_out": test[0]["held_out"],
                                              "n_spoof": int(y.sum()),
                                              "n_bonafide": int((y == 0).sum()),
                                              "n_calibration_bonafide": len(cal),
                                              **({"members": [path.stem for path in paths]}
                                                 if len(paths) > 1 else {})})
            if len(paths) > 1:
                entry[f"eer_pct_cnn_members_{channel}"] = [
                    round(100 * eer(margins_of(t, channel, test), y)[0], 2) for t in tables]
            scores = {"cnn": cnn, "rps": rps,
                      **fusions(cnn_cal, rps_cal, cnn, judged,
                                cue.music.distance(test_features))}
            entry.update(eers(y, scores, channel))
            groups = np.array([items[r["key"]].group for r in test])
            for name in ("cnn", "fused"):
                entry[f"eer_ci95_pct_{name}_{channel}"] = [
                    round(100 * v, 2) for v in bootstrap_eer(scores[name], y, groups=groups)]
        e = rows_out[row]
        print(f"{row:40s} {e['held_out']:16s} {summary(e)}; fused 95 % CI "
              f"{e['eer_ci95_pct_fused_wideband']} / {e['eer_ci95_pct_fused_mulaw8k']}",
              flush=True)
    genuine_test = [k for k, it in items.items() if it.split == "test" and it.label == 0]
    families = sorted({it.family for it in items.values() if it.label == 1})
    one_class: dict = {}
    for channel in ("wideband", "mulaw8k"):
        reference = model.judged_distance(features(channel, genuine_train))
        g = no_opinion(model.judged_distance(features(channel, genuine_test)), reference)
        for fam in families:
            keys = [k for k, it in items.items() if it.label == 1 and it.family == fam]
            s = no_opinion(model.judged_distance(features(channel, keys)), reference)
            y = np.r_[np.zeros(len(g)), np.ones(len(s))].astype(int)
            one_class.setdefault(fam, {"n_spoof": len(keys)})[f"eer_pct_{channel}"] = round(
                100 * eer(np.r_[g, s], y)[0], 2)
    doc = {
        "protocol": ("one-class RPS cue: Gaussian of per-window relative-phase-shift "
                     "statistics (harmonics 2-12, YIN F0, 3-period Hann windows, 8 kHz, "
                     "20 ms frames) fitted on the genuine training split (wideband and 8 kHz "
                     "μ-law), score = log Mahalanobis distance of windows with >= 30 voiced "
                     "frames (the cue alone scores the others as the median genuine "
                     "window; in the fusions they keep the CNN's score); fused with "
                     "bench.loso CNN margins as the sum of "
                     "z-scores normalised by the genuine calibration split, the phase z-score "
                     f"above zero capped by the music model's and weighted {PHASE_WEIGHT} "
                     "(fused, as shipped), the same with z below zero counting against "
                     "(fused_two_sided), or plain with equal weight (fused_plain_sum), or "
                     "the CNN z-score plus the phase z-score above its genuine calibration 90th "
                     "percentile (fused_hinge); EER of all files "
                     "of the held-out family vs the genuine test split"),
        "fused_as_in": cue.version,
        "bootstrap": ("eer_ci95_pct_*: 95 % percentile interval over 1000 resamplings of "
                      "the split's groups (genuine speakers; resynthesised speakers or "
                      "sentences of the held-out family)"),
        "split_seed": args.split_seed,
        "n_genuine_training_files": len(genuine_train),
        "fusion_with_loso_rows": rows_out,
        "rps_alone_every_family": one_class,
        **({"shipped_model_fused": shipped_fusion(items, features)} if args.shipped else {}),
        "wall_seconds": round(time.time() - t0),
    }
    if args.cache is not None:
        np.savez(args.cache, **{f"{ch}|{k}": v for (ch, k), v in cache.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
