"""Detection quality: the shared labelled corpus and the generated corpus' test split.

Part 1, the shared corpus (../shared/data/speech, 150 files). For the
imported AASIST and AASIST-L (published weights, converted by our import
path) and the shipped model, wideband and after an 8 kHz μ-law round trip
(the phone channel):

- EER overall with a 95 % bootstrap interval (speakers resampled as groups),
  and EER per spoof source (that source against all bona fide speech);
- false-positive and false-negative rates at each model's operating
  threshold (calibrated P(synthetic) >= 0.5; softmax 0.5 for the imports);
- for the shipped model, the same on the held-out *test* split of
  models/splits.json (the rest of the corpus was used to train and
  calibrate it, so whole-corpus numbers flatter it), plus file-level scores
  of the live pipeline (all windows fused).

Part 2, the held-out test split of the generated corpus (.data/corpus, built
by models/synth_corpus.py; the split is the one in models/splits.json, shared
test files included): per spoof family EER and FNR at the operating point,
overall EER / FPR / FNR and FPR per genuine source, wideband and μ-law, with
95 % bootstrap intervals (genuine speech resampled by speaker, synthetic
speech by sentence), for the shipped model and AASIST / AASIST-L side by
side. AASIST costs ~300 ms per window on this CPU, so the imports score at
most ``--aasist-max-files`` (400) files of the split, a family-stratified
seeded subset when the split is larger (it has 347 files, so all of them).
Skipped, with a message, when the generated corpus is absent.

Part 3, leave-one-family-out: the table of bench/results/loso.json (written
by bench/loso.py, ~20 min; not rerun here) folded into eer.json, and beside it
the detector as it runs by default, each held-out CNN fused with the phase cue
(bench/results/phase_cue_lofo.json, written by bench/relative_phase.py from
bench.loso --scores files, with bootstrap intervals; when the shipped CNN is a
seed ensemble, the ensembles of as many held-out retrains,
phase_cue_lofo_ensemble.json). ``--lofo-only`` refolds both without rerunning
the rest.

Part 4, families the shipped model never saw: every generated file of each
spoof family missing from the sidecar's ``trained_families`` (the vocoder
families added to the generator after it was trained) against the bona fide
files of the test split, reported like part 2 (``--unseen-only`` reruns just
this part; the imports score all bona fide files and at most
``--aasist-max-files`` spoofs). ``--candidate MODEL.onnx`` scores a model
that is not shipped (a release candidate, with its sidecar) the same way on
the families *it* never saw and writes bench/results/candidates/<version>.json,
leaving eer.json alone: the model card compares candidates with the shipped
model on these files before one replaces it.

Scores follow the AASIST reference recipe (first 64 600 samples of each file,
tiled if shorter), so numbers are comparable to the published ones.

Beside the shipped model alone (``shipped``), every part scores the detector
as it runs by default, the shipped model with the relative-phase cue fitted
for it (``shipped+phase``: the fused margin on the model's own calibration).

Run from the repository root: ``python -m bench.eer``. Writes
bench/results/eer.json and bench/results/det.png (DET curves of both parts).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.metrics import bootstrap_eer, det_points, eer, rates_at
from streamguard import Guard, GuardConfig
from streamguard.config import bundled_model_path
from streamguard.detectors import VoiceCloneDetector
from streamguard.detectors.phase_cue import PhaseCue, load_beside
from streamguard.inference import OnnxModel
from streamguard.inference.onnx_model import ModelInfo
from streamguard.media import (
    StreamResampler,
    decode_file,
    pcm16_to_float,
    ulaw_decode,
    ulaw_encode,
)
from streamguard.offline import scan_pcm

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
SHARED_AASIST = REPO.parent / "shared" / "reference" / "aasist"
SPLITS = REPO / "models" / "splits.json"
LOSO = REPO / "bench" / "results" / "loso.json"
PHASE_LOFO = REPO / "bench" / "results" / "phase_cue_lofo.json"
PHASE_LOFO_ENSEMBLE = REPO / "bench" / "results" / "phase_cue_lofo_ensemble.json"
CORPUS = REPO / ".data" / "corpus"
OUT = REPO / "bench" / "results"
SHARED_FAMILY = {"spoof_piper": "piper-joe", "spoof_espeak": "espeak-ng",
                 "bonafide": "librispeech"}
CHANNELS = ("wideband", "mulaw8k")
PAIR = "shipped+phase"  # the shipped model with its phase cue, as the Guard runs it
sys.path.insert(0, str(REPO / "models"))

# Families made by resynthesising genuine recordings: their bootstrap unit is the
# source speaker, not the sentence.
from synth_corpus import RESYNTHESIS_KINDS as RESYNTHESIS_FAMILIES  # noqa: E402


def phone_channel(pcm: np.ndarray) -> np.ndarray:
    """16 kHz -> 8 kHz -> G.711 μ-law -> back to 16 kHz, as a call reaches us."""
    down = StreamResampler(16000, 8000)
    narrow = np.concatenate([down.push(pcm), down.flush()])
    coded = ulaw_decode(ulaw_encode(narrow))
    up = StreamResampler(8000, 16000)
    return np.concatenate([up.push(coded), up.flush()])[: len(pcm)]


def load_corpus() -> list[dict[str, str]]:
    with (SPEECH / "labels.csv").open() as fh:
        return list(csv.DictReader(fh))


def score_files(model: OnnxModel, audio: list[np.ndarray], batch: int = 8,
                phase: PhaseCue | None = None) -> np.ndarray:
    """Spoof margin per file; with ``phase``, the margin fused with the phase cue."""
    detector = VoiceCloneDetector(model.info, phase)
    run = detector.batch_runner(model.run)
    inputs = np.stack([detector.prepare(pcm16_to_float(pcm)) for pcm in audio])
    margins = []
    for start in range(0, len(inputs), batch):
        for row in run(inputs[start:start + batch]):
            score = detector.score(row)
            margins.append(score.margin if phase is None
                           else phase.fuse(score.margin, float(row[2])))
    return np.array(margins)


def phase_of(name: str, path: Path) -> PhaseCue | None:
    """The phase cue a bench entry runs with: only the shipped pair has one."""
    return load_beside(path) if name == PAIR else None


async def pipeline_probabilities(model_path: Path, audio: list[np.ndarray],
                                 phase_cue: bool) -> np.ndarray:
    probs = []
    async with Guard.from_config(GuardConfig(model_path=model_path,
                                             phase_cue=phase_cue)) as guard:
        for i, pcm in enumerate(audio):
            result = await scan_pcm(guard, f"eer-{i}", pcm, 16000)
            assert result.final is not None
            probs.append(result.final.probability if result.final.probability is not None
                         else 0.5)
    return np.array(probs)


def summarise(scores: np.ndarray, labels: np.ndarray, sources: np.ndarray,
              speakers: np.ndarray, threshold: float) -> dict:
    value, at = eer(scores, labels)
    low, high = bootstrap_eer(scores, labels, groups=speakers)
    out = {
        "eer_pct": round(100 * value, 2), "eer_ci95_pct": [round(100 * low, 2),
                                                           round(100 * high, 2)],
        "eer_threshold": at, "operating_point": rates_at(scores, labels, threshold),
        "per_source": {},
    }
    for source in sorted(set(sources[labels == 1])):
        keep = (labels == 0) | (sources == source)
        src_eer, _ = eer(scores[keep], labels[keep])
        out["per_source"][source] = {
            "eer_pct": round(100 * src_eer, 2),
            "fnr_at_operating_point": rates_at(scores[keep], labels[keep], threshold)["fnr"],
            "n": int((sources == source).sum()),
        }
    return out


# ------------------------------------------------ generated corpus, test split


def load_test_split() -> tuple[dict | None, str]:
    """Files of the test split of models/splits.json, or (None, why not)."""
    if not SPLITS.exists():
        return None, f"{SPLITS.relative_to(REPO)} not found"
    if not ((CORPUS / "READY").exists() and (CORPUS / "manifest.csv").exists()):
        return None, (f"generated corpus not found at {CORPUS.relative_to(REPO)} (build it with "
                      "`nice -n 10 .venv/bin/python models/synth_corpus.py`)")
    splits = json.loads(SPLITS.read_text())
    rows = []
    with (SPEECH / "labels.csv").open() as fh:
        for r in csv.DictReader(fh):
            if splits["shared"].get(r["path"]) == "test":
                rows.append({"path": SPEECH / r["path"], "label": r["label"],
                             "family": SHARED_FAMILY[r["path"].split("/")[0]],
                             "speaker": r["speaker"], "text": r["text"], "key": r["path"]})
    wanted = {k for k, v in splits["corpus"].items() if v == "test"}
    with (CORPUS / "manifest.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["path"] in wanted:
                rows.append({**r, "path": CORPUS / r["path"], "key": r["path"]})
                wanted.discard(r["path"])
    missing = sorted(wanted)
    if len(missing) > 0.05 * len(rows):
        return None, (f"{len(missing)} test-split files of models/splits.json are not in the "
                      "generated corpus (different generator version?)")
    return {"rows": rows, "missing": missing}, ""


def group_of(row: dict) -> str:
    """Bootstrap unit: the speaker for genuine speech, the sentence for synthetic speech."""
    lib = re.search(r"(\d+)-\d+-\d+", Path(row["path"]).name)
    if row["label"] == "bonafide":
        return f"librispeech:{lib.group(1)}" if lib else f"spk:{row['speaker'].lower()}"
    if row["family"] in RESYNTHESIS_FAMILIES:  # of a genuine speaker's recording
        return f"gl:{lib.group(1) if lib else row['speaker'].lower()}"
    text = re.sub(r"[\W_]+", " ", row["text"].lower()).strip()
    return f"text:{text}" if text else f"file:{row['key']}"


def stratified_subset(families: np.ndarray, max_files: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_files`` files, every family keeping its share."""
    n = len(families)
    if n <= max_files:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keep = []
    for fam in sorted(set(families)):
        idx = np.nonzero(families == fam)[0]
        k = max(1, round(len(idx) * max_files / n))
        keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))[:max_files]


def _ci(values: list[float]) -> list[float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(100 * float(low), 2), round(100 * float(high), 2)]


def bootstrap_rates(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                    threshold: float, rounds: int = 1000, seed: int = 0) -> dict:
    """95 % intervals of EER, FPR and FNR at ``threshold``, resampling groups per class."""
    rng = np.random.default_rng(seed)
    members = {}
    for cls in (0, 1):
        idx = np.nonzero(labels == cls)[0]
        members[cls] = [idx[groups[idx] == g] for g in np.unique(groups[idx])]
    eers, fprs, fnrs = [], [], []
    for _ in range(rounds):
        picked = {cls: np.concatenate([members[cls][i] for i in
                                       rng.integers(0, len(members[cls]), len(members[cls]))])
                  for cls in (0, 1)}
        sample = np.concatenate([picked[0], picked[1]])
        eers.append(eer(scores[sample], labels[sample])[0])
        fprs.append(float((scores[picked[0]] >= threshold).mean()))
        fnrs.append(float((scores[picked[1]] < threshold).mean()))
    return {"eer": _ci(eers), "fpr": _ci(fprs), "fnr": _ci(fnrs)}


def split_report(scores: np.ndarray, labels: np.ndarray, families: np.ndarray,
                 groups: np.ndarray, threshold: float, rounds: int) -> dict:
    """Overall and per-family EER / FPR / FNR at the operating point, with bootstrap CIs."""
    value, _ = eer(scores, labels)
    op = rates_at(scores, labels, threshold)
    ci = bootstrap_rates(scores, labels, groups, threshold, rounds)
    out: dict = {
        "overall": {"eer_pct": round(100 * value, 2), "eer_ci95_pct": ci["eer"],
                    "fpr_pct": round(100 * op["fpr"], 2), "fpr_ci95_pct": ci["fpr"],
                    "fnr_pct": round(100 * op["fnr"], 2), "fnr_ci95_pct": ci["fnr"],
                    "threshold_margin": threshold, "n_bonafide": op["n_bonafide"],
                    "n_spoof": op["n_spoof"]},
        "per_family": {}, "genuine_sources": {},
    }
    for fam in sorted(set(families[labels == 1])):
        keep = (labels == 0) | (families == fam)
        s, y, g = scores[keep], labels[keep], groups[keep]
        fam_eer, _ = eer(s, y)
        fam_ci = bootstrap_rates(s, y, g, threshold, rounds)
        out["per_family"][fam] = {
            "eer_pct": round(100 * fam_eer, 2), "eer_ci95_pct": fam_ci["eer"],
            "fnr_pct": round(100 * float((s[y == 1] < threshold).mean()), 2),
            "fnr_ci95_pct": fam_ci["fnr"], "n_spoof": int(y.sum()),
            "spoof_groups": len(np.unique(g[y == 1]))}
    for src in sorted(set(families[labels == 0])):
        sel = (labels == 0) & (families == src)
        out["genuine_sources"][src] = {
            "fpr_pct": round(100 * float((scores[sel] >= threshold).mean()), 2),
            "flagged": int((scores[sel] >= threshold).sum()), "n": int(sel.sum())}
    return out


def evaluate_test_split(models: dict[str, Path], max_aasist: int, rounds: int,
                        curves: dict) -> dict:
    data, why = load_test_split()
    if data is None:
        print(f"generated test split skipped: {why}")
        return {"skipped": why}
    rows = data["rows"]
    families = np.array([r["family"] for r in rows])
    subset = stratified_subset(families, max_aasist)
    out: dict = {
        "protocol": ("held-out test split of models/splits.json (generated corpus + the shared "
                     "corpus' test part); first 64600 samples per file; EER per spoof family = "
                     "that family vs all test bona fide; FPR/FNR at the model's operating point "
                     "(shipped: calibrated P(synthetic) >= 0.5; AASIST: softmax 0.5, margin 0); "
                     f"95 % bootstrap CIs, {rounds} rounds, bona fide resampled by speaker, "
                     "spoofs by sentence (resyntheses by source speaker)"),
        "files": len(rows), "missing_from_corpus": data["missing"],
        "aasist_files": len(subset),
        "aasist_note": (f"AASIST / AASIST-L scored on {len(subset)} of {len(rows)} files "
                        f"(cap --aasist-max-files {max_aasist}, ~300 ms per window on this "
                        "CPU)" + ("; the whole split" if len(subset) == len(rows) else
                                 "; family-stratified seeded subset")),
    }
    return {**out, **score_rows(rows, subset, models, rounds, curves, "generated test split")}


def load_unseen_families(model: Path) -> tuple[dict | None, str]:
    """Every generated file of the spoof families ``model`` was not trained on (its
    sidecar's ``trained_families``), with the bona fide speech of the test split."""
    data, why = load_test_split()
    if data is None:
        return None, why
    sidecar = ModelInfo.from_sidecar(model.with_suffix(".json"))
    trained = set(sidecar.extra.get("trained_families", []))
    spoofs = []
    with (CORPUS / "manifest.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["label"] == "spoof" and r["family"] not in trained:
                spoofs.append({**r, "path": CORPUS / r["path"], "key": r["path"]})
    if not spoofs:
        return None, f"{sidecar.version} was trained on every generated spoof family"
    genuine = [r for r in data["rows"] if r["label"] == "bonafide"]
    return {"rows": genuine + spoofs, "trained": sorted(trained)}, ""


def evaluate_unseen_families(models: dict[str, Path], max_aasist: int, rounds: int,
                             reference: str = "shipped") -> dict:
    """Part 4: how the ``reference`` model does on whole families it has never seen."""
    data, why = load_unseen_families(models[reference])
    if data is None:
        print(f"unseen families skipped: {why}")
        return {"skipped": why}
    rows = data["rows"]
    labels = np.array([r["label"] == "spoof" for r in rows], dtype=int)
    spoof_idx = np.nonzero(labels == 1)[0]
    families = np.array([r["family"] for r in rows])
    subset = np.sort(np.concatenate([np.nonzero(labels == 0)[0], spoof_idx[
        stratified_subset(families[spoof_idx], max_aasist)]]))
    out: dict = {
        "protocol": (f"every generated file of each spoof family absent from the {reference} "
                     "model's trained_families, against the bona fide files of the test split "
                     "of models/splits.json; otherwise as generated_test_split"),
        f"{reference}_trained_on": data["trained"],
        "files": len(rows),
        "aasist_files": len(subset),
        "aasist_note": (f"AASIST / AASIST-L scored on all bona fide files and a "
                        f"family-stratified seeded subset of at most {max_aasist} spoofs "
                        f"(--aasist-max-files), {len(subset)} files"),
    }
    return {**out, **score_rows(rows, subset, models, rounds, {}, "unseen families")}


def score_rows(rows: list[dict], subset: np.ndarray, models: dict[str, Path], rounds: int,
               curves: dict, title: str) -> dict:
    """Score every model on both channels (the imports on ``subset`` only) and report."""
    t0 = time.time()
    labels = np.array([r["label"] == "spoof" for r in rows], dtype=int)
    families = np.array([r["family"] for r in rows])
    groups = np.array([group_of(r) for r in rows])
    wide = [decode_file(r["path"]).pcm for r in rows]
    audio = {"wideband": wide, "mulaw8k": [phone_channel(x) for x in wide]}
    out: dict = {
        "bonafide": int((labels == 0).sum()), "spoof": int(labels.sum()),
        "genuine_speakers": sorted(set(groups[labels == 0])),
        "counts": {fam: int((families == fam).sum()) for fam in sorted(set(families))},
        "models": {},
    }
    for name, path in models.items():
        model = OnnxModel(path, intra_op_threads=2)
        idx = np.arange(len(rows)) if name in ("shipped", PAIR, "candidate") else subset
        phase = phase_of(name, path)
        detector = VoiceCloneDetector(model.info, phase)
        cal = detector.calibration
        threshold = -cal.b / cal.a
        entry: dict = {"version": detector.version, "files": len(idx)}
        for cond in CHANNELS:
            t1 = time.time()
            margins = score_files(model, [audio[cond][i] for i in idx], phase=phase)
            entry[cond] = split_report(margins, labels[idx], families[idx], groups[idx],
                                       threshold, rounds)
            entry[cond]["score_seconds"] = round(time.time() - t1, 1)
            curves[f"{name} {cond}"] = det_points(margins, labels[idx])
            o = entry[cond]["overall"]
            per = ", ".join(f"{k} {v['eer_pct']:.1f}" for k, v in
                            entry[cond]["per_family"].items())
            print(f"{name:9s} {cond:8s} {title}  EER {o['eer_pct']:5.1f}% "
                  f"CI {o['eer_ci95_pct']}  FPR {o['fpr_pct']:5.1f}% FNR {o['fnr_pct']:5.1f}% "
                  f"@op | {per}", flush=True)
        out["models"][name] = entry
    out["seconds"] = round(time.time() - t0, 1)
    return out


def lofo_table() -> dict:
    """Leave-one-family-out results of bench/loso.py, folded in (not rerun)."""
    if not LOSO.exists():
        return {"skipped": "bench/results/loso.json not found (run python -m bench.loso)"}
    doc = json.loads(LOSO.read_text())
    table = {fam: {"n_spoof": e["n_spoof"], "n_bonafide": e["n_bonafide"],
                   "eer_pct_wideband": e["eer_pct_wideband"],
                   "eer_pct_mulaw8k": e["eer_pct_mulaw8k"],
                   "trained_on": e["trained_on"]}
             for fam, e in doc["families"].items()}
    return {"source": "bench/results/loso.json (bench/loso.py)", "protocol": doc["protocol"],
            "steps": doc["steps"], "corpus": doc["corpus"],
            "wall_seconds": doc.get("wall_seconds"),
            "note": ("point estimates only: loso.json keeps no per-file scores, so no bootstrap "
                     "interval; each retrain is a single seed"),
            "table": table}


def shipped_members() -> int:
    """How many training seeds the shipped CNN averages (1: a single model)."""
    sidecar = ModelInfo.from_sidecar(bundled_model_path().with_suffix(".json"))
    return len(sidecar.extra.get("ensemble", {}).get("member_seeds", [0]))


def lofo_with_phase_cue_table() -> dict:
    """Leave-one-family-out of the CNN fused with the phase cue as it ships
    (bench/relative_phase.py's rows), folded in (not rerun). When the shipped CNN
    is a seed ensemble, each family's row is the ensemble of as many held-out
    retrains (phase_cue_lofo_ensemble.json); a family not yet measured so keeps
    its single-seed row, and ``n_cnn_members`` says which a row is."""
    if not PHASE_LOFO.exists():
        return {"skipped": f"{PHASE_LOFO.relative_to(REPO)} not found (run python -m "
                           "bench.relative_phase on bench.loso --scores files)"}
    members = shipped_members()
    paths = [PHASE_LOFO_ENSEMBLE, PHASE_LOFO] if members > 1 else [PHASE_LOFO]
    docs = [json.loads(path.read_text()) for path in paths]
    if len({doc.get("fused_as_in") for doc in docs}) > 1:
        raise SystemExit(f"error: {PHASE_LOFO_ENSEMBLE.name} and {PHASE_LOFO.name} were "
                         "scored with different phase cues: rerun bench.relative_phase")
    table: dict[str, dict] = {}
    for doc in docs:
        for name, e in doc["fusion_with_loso_rows"].items():
            n = len(e.get("members", [name]))
            if e["held_out"] in table or n not in (1, members):
                continue
            table[e["held_out"]] = {
                "n_spoof": e["n_spoof"], "n_bonafide": e["n_bonafide"], "n_cnn_members": n,
                **{f"{what}_{ch}": e[f"{what}_fused_{ch}"]
                   for what in ("eer_pct", "eer_ci95_pct") for ch in ("wideband", "mulaw8k")},
                **{f"eer_pct_cnn_alone_{ch}": e[f"eer_pct_cnn_{ch}"]
                   for ch in ("wideband", "mulaw8k")}}
    cnn = "held-out CNN" if members == 1 else (
        f"held-out {members}-seed CNN ensemble (single seed where n_cnn_members is 1)")
    return {"source": ", ".join(f"bench/results/{path.name}" for path in paths)
            + " (bench/relative_phase.py)",
            "detector": f"{cnn} + {docs[0].get('fused_as_in', 'phase cue')}",
            "protocol": docs[0]["protocol"], "bootstrap": docs[0].get("bootstrap"),
            "table": table}


# ------------------------------------------------------------------ report


def plot_det(panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    ticks = np.array([0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 6), squeeze=False)
    styles = {"wideband": "-", "mulaw8k": "--"}
    colours = {"shipped": "C0", "AASIST": "C1", "AASIST-L": "C2", PAIR: "C3"}
    for ax, (title, curves) in zip(axes[0], panels.items(), strict=True):
        for name, (fpr, fnr) in curves.items():
            clip = lambda v: norm.ppf(np.clip(v, 0.002, 0.998))  # noqa: E731
            model, cond = name.split(" ")[0], name.split(" ")[1]
            ax.plot(clip(fpr), clip(fnr), styles.get(cond, ":"), label=name,
                    color=colours.get(model), alpha=0.5 if "test split" in name else 1.0)
        if not curves:
            ax.text(0.5, 0.5, "generated corpus not built", transform=ax.transAxes,
                    ha="center")
        ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
        ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
        ax.set_xlabel("false positive rate: bona fide flagged (%)")
        ax.set_ylabel("false negative rate: synthetic missed (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        if curves:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description="EER on the shared and generated corpora")
    parser.add_argument("--skip-aasist", action="store_true")
    parser.add_argument("--aasist-max-files", type=int, default=400,
                        help="cap on generated-test-split files scored by AASIST(-L)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument("--lofo-only", action="store_true",
                        help="only fold the leave-one-family-out tables (loso.json, "
                             "phase_cue_lofo.json) into eer.json again")
    parser.add_argument("--unseen-only", action="store_true",
                        help="only rerun part 4 (families the shipped model never saw)")
    parser.add_argument("--candidate", type=Path, metavar="MODEL.onnx",
                        help="only score this unshipped model (with its sidecar) on the "
                             "families it never saw -> bench/results/candidates/<version>.json")
    args = parser.parse_args()
    if args.candidate:
        return score_candidate(args.candidate, args.bootstrap)
    if args.lofo_only or args.unseen_only:
        path = OUT / "eer.json"
        results = json.loads(path.read_text()) if path.exists() else {}
        if args.lofo_only:
            fold_lofo(results)
        if args.unseen_only:
            with tempfile.TemporaryDirectory() as tmp:
                models = {} if args.skip_aasist else import_references(Path(tmp))
                models["shipped"] = models[PAIR] = bundled_model_path()
                results["unseen_families"] = evaluate_unseen_families(
                    models, args.aasist_max_files, args.bootstrap)
        write_results(results)
        return 0
    if not SPEECH.exists():
        print(f"shared corpus not found at {SPEECH}")
        return 1
    t_start = time.time()
    rows = load_corpus()
    labels = np.array([r["label"] == "spoof" for r in rows], dtype=int)
    sources = np.array([r["source"] for r in rows])
    speakers = np.array([f"{r['source']}:{r['speaker']}" for r in rows])
    paths = [r["path"] for r in rows]
    wide = [decode_file(SPEECH / p).pcm for p in paths]
    conditions = {"wideband": wide, "mulaw8k": [phone_channel(x) for x in wide]}

    splits = json.loads(SPLITS.read_text()) if SPLITS.exists() else {}
    split_of = splits.get("shared", {})
    test_mask = np.array([split_of.get(p) == "test" for p in paths])

    results: dict = {"corpus": {"files": len(rows), "bonafide": int((labels == 0).sum()),
                                "spoof": int((labels == 1).sum()),
                                "sources": sorted(set(sources))},
                     "models": {}}
    curves: dict = {}
    split_curves: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        models: dict[str, Path] = {}
        if not args.skip_aasist:
            models.update(import_references(Path(tmp)))
        models["shipped"] = models[PAIR] = bundled_model_path()
        for name, path in models.items():
            model = OnnxModel(path, intra_op_threads=2)
            phase = phase_of(name, path)
            detector = VoiceCloneDetector(model.info, phase)
            cal = detector.calibration
            # Operating point: calibrated P(synthetic) >= 0.5, i.e. a*m + b >= 0.
            threshold = -cal.b / cal.a
            entry: dict = {"version": detector.version, "calibration": cal.method}
            for cond, audio in conditions.items():
                margins = score_files(model, audio, phase=phase)
                entry[cond] = {"all": summarise(margins, labels, sources, speakers, threshold)}
                curves[f"{name} {cond}"] = det_points(margins, labels)
                if name in ("shipped", PAIR) and test_mask.any():
                    m = test_mask
                    entry[cond]["test_split"] = summarise(margins[m], labels[m], sources[m],
                                                          speakers[m], threshold)
                    probs = asyncio.run(pipeline_probabilities(
                        path, [audio[i] for i in np.nonzero(m)[0]], phase is not None))
                    entry[cond]["test_split_pipeline"] = summarise(
                        probs, labels[m], sources[m], speakers[m], 0.5)
                    curves[f"{name} {cond} test split"] = det_points(margins[m], labels[m])
                print_row(name, cond, entry[cond])
            results["models"][name] = entry
        results["seconds_shared_corpus"] = round(time.time() - t_start, 1)
        results["generated_test_split"] = evaluate_test_split(
            models, args.aasist_max_files, args.bootstrap, split_curves)
        results["unseen_families"] = evaluate_unseen_families(
            models, args.aasist_max_files, args.bootstrap)
    if test_mask.any():
        results["test_split"] = {"files": int(test_mask.sum()),
                                 "bonafide": int((labels[test_mask] == 0).sum()),
                                 "spoof": int((labels[test_mask] == 1).sum())}
    fold_lofo(results)
    results["wall_seconds"] = round(time.time() - t_start, 1)
    write_results(results)
    split = results["generated_test_split"]
    title = (f"generated corpus, held-out test split ({split['files']} files; "
             f"AASIST on {split['aasist_files']})" if "files" in split
             else "generated corpus test split: not built")
    plot_det({"shared speech corpus (150 files)": curves, title: split_curves},
             OUT / "det.png")
    print(f"wrote bench/results/eer.json and bench/results/det.png "
          f"({results['wall_seconds']:.0f} s)")
    return 0


def score_candidate(path: Path, rounds: int) -> int:
    """Part 4 for a release candidate; eer.json (the shipped model's numbers) is left alone."""
    if not path.with_suffix(".json").exists():
        print(f"{path}: no sidecar {path.with_suffix('.json').name} beside it")
        return 1
    t0 = time.time()
    result = evaluate_unseen_families({"candidate": path}, 0, rounds, reference="candidate")
    if "skipped" in result:
        return 1
    for key in ("aasist_files", "aasist_note"):
        result.pop(key)
    version = result["models"]["candidate"]["version"]
    result["wall_seconds"] = round(time.time() - t0, 1)
    out = OUT / "candidates" / f"{version}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float, ensure_ascii=False) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return 0


def import_references(directory: Path) -> dict[str, Path]:
    """AASIST / AASIST-L through the import command's code path; skipped when absent."""
    try:
        from streamguard.importers.aasist import import_aasist
    except ImportError as exc:
        print(f"skipping AASIST models (import path unavailable: {exc})")
        return {}
    models = {}
    for name, ckpt in (("AASIST", "AASIST.pth"), ("AASIST-L", "AASIST-L.pth")):
        if (SHARED_AASIST / ckpt).exists():
            models[name] = import_aasist(SHARED_AASIST / ckpt, directory, name=name.lower())
        else:
            print(f"skipping {name}: {SHARED_AASIST / ckpt} not found")
    return models


def write_results(results: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "eer.json").write_text(json.dumps(results, indent=1, default=float,
                                             ensure_ascii=False) + "\n")


def fold_lofo(results: dict) -> None:
    """Fold both leave-one-family-out tables into ``results`` and print them."""
    results["leave_one_family_out"] = lofo_table()
    results["leave_one_family_out_with_phase_cue"] = lofo_with_phase_cue_table()
    print_lofo(results["leave_one_family_out"], "CNN retrains")
    print_lofo(results["leave_one_family_out_with_phase_cue"], "CNN retrains + phase cue")


def print_lofo(doc: dict, what: str) -> None:
    if "table" not in doc:
        print(f"leave-one-family-out, {what}: {doc['skipped']}")
        return
    print(f"\nleave-one-family-out, {what}\n"
          f"{'held-out family':20s} {'n':>5s} {'EER wb %':>9s} {'EER μ-law %':>12s}")
    for fam, e in doc["table"].items():
        ci = (f"  95 % CI {e['eer_ci95_pct_wideband']} / {e['eer_ci95_pct_mulaw8k']}"
              if "eer_ci95_pct_wideband" in e else "")
        print(f"{fam:20s} {e['n_spoof']:5d} {e['eer_pct_wideband']:9.1f} "
              f"{e['eer_pct_mulaw8k']:12.1f}{ci}")


def print_row(name: str, cond: str, entry: dict) -> None:
    for subset, s in entry.items():
        op = s["operating_point"]
        per = ", ".join(f"{k} {v['eer_pct']:.1f}" for k, v in s["per_source"].items())
        print(f"{name:9s} {cond:8s} {subset:20s} EER {s['eer_pct']:5.1f}% "
              f"CI [{s['eer_ci95_pct'][0]:.1f}, {s['eer_ci95_pct'][1]:.1f}]  "
              f"FPR {100 * op['fpr']:5.1f}% FNR {100 * op['fnr']:5.1f}% @op  | {per}")


if __name__ == "__main__":
    raise SystemExit(main())
