"""Leave-one-source-out (LOSO) generalisation of the shipped detector's recipe.

For every spoof family in the training data, retrain the voice-clone CNN
(models/train_voice_clone.py, same splits, same augmentation, a shorter
schedule) with that family removed from training, then measure the EER of
the held-out family (all of its files: none was seen) against the genuine
speech of the *test* split, wideband and after an 8 kHz μ-law round trip.

This is the number that matters for an unseen voice-cloning system: the
in-distribution test EER only says the model recognises engines it was
trained on.

Run from the repository root (needs the dev extra, ~3-4 min per family on
2 cores):

    nice -n 5 .venv/bin/python -m bench.loso [--steps 400] [--families a,b]

Writes bench/results/loso.json and prints a table; ``--scores FILE`` also
writes every scored file's spoof margin (one CSV row per file and channel;
the genuine calibration files too, marked by the ``split`` column, as a
reference that no EER here uses), for reading which sources a row misses.
``--seeds 0,1,2`` trains one model per seed for each held-out family and
scores them as models/train_voice_clone.py --members ships them (the mean of
each member's margins z-scored against its genuine calibration files, with
each member's EER beside it);
``--split-seed`` keeps the genuine test files fixed while the training seed
varies.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "models"))

import train_voice_clone as tvc  # noqa: E402

OUT = REPO / "bench" / "results" / "loso.json"


def recipe(steps: int, seeds: list[int], time_branch: bool, music: bool, use_corpus: bool,
           paired: float = 0.0, split_seed: int | None = None, crowd: float = 0.0,
           vocalisations: bool = False) -> dict:
    """What a table's rows share; --merge refuses a table whose recipe differs."""
    seed: int | list[int] = seeds[0] if len(seeds) == 1 else seeds  # a list: an ensemble
    doc = {"steps": steps, "seed": seed, "time_branch": time_branch, "music_bed": music,
           "paired": paired,  # tables made before pairing lack it: read as False == 0.0
           "crowd": crowd, "vocalisations": vocalisations,  # likewise
           "corpus": "shared + generated" if use_corpus else "shared only"}
    if split_seed is not None and split_seed != seeds[0]:  # older tables split by the seed
        doc["split_seed"] = split_seed
    return doc


def combined(members: list[np.ndarray], references: list[np.ndarray]) -> np.ndarray:
    """One model's margins, or an ensemble's as models/train_voice_clone.py --members
    ships it: the members' margins z-scored against their genuine ``references``."""
    return members[0] if len(members) == 1 else tvc.ensemble_margins(members, references)


def run(families: list[str] | None, steps: int, seeds: list[int], use_corpus: bool,
        time_branch: bool = False, music: bool = False, paired: float = 0.0,
        scores: Path | None = None, split_seed: int | None = None, crowd: float = 0.0,
        vocalisations: bool = False) -> dict:
    tracks = tvc.music_tracks()[0] if music else []  # fails loudly, before any loading
    vocal = tvc.vocalisation_reels(seeds[0])[0] if vocalisations else []
    items = tvc.gather(use_corpus, seeds[0] if split_seed is None else split_seed)
    tvc.log_family_counts(items)
    tvc.check_families(items, tvc.expected_spoof_families(use_corpus))  # fails loudly
    items = tvc.load_all(items)
    train_items = [it for it in items if it.split == "train"]
    genuine_test = [it for it in items if it.split == "test" and it.label == 0]
    # Scored for --scores (a reference that no EER here uses, so a later fusion can
    # normalise margins without looking at the test files) and for an ensemble (each
    # member's margins become z-scores against them, as SeedEnsemble's do).
    genuine_cal = ([it for it in items if it.split == "calib" and it.label == 0]
                   if scores is not None or len(seeds) > 1 else [])
    all_families = sorted({it.family for it in train_items if it.label == 1})
    families = families or all_families
    babble = [it.audio for it in train_items if it.label == 0]
    wins = {ch: tvc.channel_windows(genuine_test, ch) for ch in ("wideband", "mulaw8k")}
    cal_wins = {ch: tvc.channel_windows(genuine_cal, ch) for ch in ("wideband", "mulaw8k")}
    # The genuine sources that never train joined the test split after the first LOSO
    # table; EERs without them stay comparable with it.
    core = np.array([it.family not in tvc.EVALUATION_ONLY_GENUINE for it in genuine_test])
    results: dict = {}
    rows: list[tuple] = []  # per-file margins for --scores
    for fam in families:
        t0 = time.time()
        held = [it for it in items if it.label == 1 and it.family == fam]
        train = [it for it in train_items if not (it.label == 1 and it.family == fam)]
        if not any(it.label == 1 for it in train):
            tvc.log(f"{fam}: no other spoof family to train on, skipped")
            continue
        tvc.log(f"LOSO {fam}: train {len(train)} files without it, "
                f"evaluate {len(held)} held-out files vs {len(genuine_test)} genuine")
        per_seed: dict[str, list] = {ch: [] for ch in ("wideband", "mulaw8k")}
        cal_per_seed: dict[str, list] = {ch: [] for ch in ("wideband", "mulaw8k")}
        for seed in seeds:
            model = tvc.train(train, tvc.TrainConfig(steps=steps, seed=seed, log_every=100,
                                                     time_branch=time_branch,
                                                     paired=paired, crowd=crowd),
                              babble, tracks, vocal)
            for ch, ms in per_seed.items():
                ms.append(np.concatenate([tvc.margins(model, wins[ch]),
                                          tvc.margins(model, tvc.channel_windows(held, ch))]))
                if genuine_cal:
                    cal_per_seed[ch].append(tvc.margins(model, cal_wins[ch]))
        entry: dict = {"n_spoof": len(held), "n_bonafide": len(genuine_test),
                       "trained_on": sorted({it.family for it in train if it.label == 1})}
        y = np.r_[np.zeros(len(genuine_test)), np.ones(len(held))].astype(int)
        keep = np.r_[core, np.ones(len(held), dtype=bool)]
        references = [np.concatenate(both) for both in zip(*cal_per_seed.values(), strict=True)]
        for ch, ms in per_seed.items():
            m = combined(ms, references)
            rows += [(fam, ch, "test", it.key, it.label, it.family, f"{v:.4f}")
                     for it, v in zip(genuine_test + held, m, strict=True)]
            if genuine_cal:
                rows += [(fam, ch, "calibration", it.key, it.label, it.family, f"{v:.4f}")
                         for it, v in zip(genuine_cal, combined(cal_per_seed[ch], references),
                                          strict=True)]
            entry[f"eer_pct_{ch}"] = round(100 * tvc.eer(m, y), 2)
            entry[f"eer_pct_{ch}_without_evaluation_only_genuine"] = round(
                100 * tvc.eer(m[keep], y[keep]), 2)
            # Fraction of held-out spoofs scored above the median genuine margin.
            entry[f"spoof_above_genuine_median_pct_{ch}"] = round(
                100 * float((m[y == 1] > np.median(m[y == 0])).mean()), 1)
            if len(seeds) > 1:
                entry[f"eer_pct_{ch}_per_seed"] = [round(100 * tvc.eer(one, y), 2)
                                                   for one in ms]
        entry["seconds"] = round(time.time() - t0)
        results[fam] = entry
        tvc.log(f"LOSO {fam}: EER wideband {entry['eer_pct_wideband']} %, "
                f"μ-law {entry['eer_pct_mulaw8k']} % ({entry['seconds']} s)")
    if scores is not None:
        with scores.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["held_out", "channel", "split", "key", "label", "family", "margin"])
            out.writerows(rows)
    return {
        "protocol": ("retrain without one spoof family (models/train_voice_clone.py recipe, "
                     f"{steps} steps, seeds {seeds}); EER of all files of that family vs the "
                     "genuine speech of the test split; first 64600 samples per file; "
                     "wideband and 8 kHz μ-law round trip"),
        **recipe(steps, seeds, time_branch, music, use_corpus, paired, split_seed, crowd,
                 vocalisations),
        "families": results,
    }


def print_table(doc: dict) -> None:
    print(f"\n{'held-out family':24s} {'n':>5s} {'EER wb %':>9s} {'EER μ-law %':>12s}")
    for fam, e in doc["families"].items():
        print(f"{fam:24s} {e['n_spoof']:5d} {e['eer_pct_wideband']:9.1f} "
              f"{e['eer_pct_mulaw8k']:12.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="leave-one-source-out EER")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default="",
                    help="comma-separated training seeds: one model per seed and held-out "
                         "family, scored by their mean margin (an ensemble); overrides --seed")
    ap.add_argument("--split-seed", type=int, default=None,
                    help="seed of the speaker/sentence split (default: the first training "
                         "seed); fixing it while --seed varies keeps the genuine test files "
                         "the same, so rows of several seeds can be compared file by file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--families", default="", help="comma-separated subset")
    ap.add_argument("--no-corpus", action="store_true")
    ap.add_argument("--time-branch", action="store_true",
                    help="retrain with VoiceCloneNet's time-domain branch")
    ap.add_argument("--music", action="store_true",
                    help="train with the trainer's music bed (augment.SoundBed)")
    ap.add_argument("--paired", type=float, default=0.0,
                    help="P(a resynthesised spoof is paired with its own genuine source)")
    ap.add_argument("--crowd", type=float, default=0.0,
                    help="P(augment.add_crowd in place of the ordinary noise draw)")
    ap.add_argument("--vocalisations", action="store_true",
                    help="train with the trainer's vocalisation bed (augment.SoundBed)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--scores", type=Path, default=None,
                    help="also write every scored file's spoof margin to this CSV "
                         "(error analysis: which sources and files a row misses)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other families' entries already in --out (each entry "
                         "lists the families it was trained on); refused when --out was "
                         "made with another recipe (steps, seeds, branch, beds, crowd, corpus)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    use_corpus = not args.no_corpus and tvc.corpus_ready()
    fams = [f for f in args.families.split(",") if f] or None
    seeds = [int(x) for x in args.seeds.split(",") if x] or [args.seed]
    kept: dict = {}
    if args.merge and args.out.exists():
        old = json.loads(args.out.read_text())
        ours = recipe(args.steps, seeds, args.time_branch, args.music, use_corpus,
                      args.paired, args.split_seed, args.crowd, args.vocalisations)
        clash = {k: (old.get(k, False), v) for k, v in ours.items() if old.get(k, False) != v}
        if clash:  # one table, one recipe: rows of another recipe would read as comparable
            print(f"error: {args.out} holds rows of another recipe ({clash}, as "
                  "(file, this run)); write to another --out", file=sys.stderr)
            return 2
        kept = old["families"]
    t0 = time.time()
    try:
        doc = run(fams, args.steps, seeds, use_corpus, args.time_branch, args.music,
                  args.paired, args.scores, args.split_seed, args.crowd, args.vocalisations)
    except (tvc.MissingFamilyError, tvc.MissingSoundsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc["wall_seconds"] = round(time.time() - t0)
    doc["families"] = {**{f: e for f, e in kept.items() if f not in doc["families"]},
                       **doc["families"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print_table(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
