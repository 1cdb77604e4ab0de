"""Detection quality on the shared labelled corpus (../shared/data/speech).

For the imported AASIST and AASIST-L (published weights, converted by our
import path) and the shipped model, wideband and after an 8 kHz μ-law round
trip (the phone channel), this reports:

- EER overall with a 95 % bootstrap interval (speakers resampled as groups),
  and EER per spoof source (that source against all bona fide speech);
- false-positive and false-negative rates at each model's operating
  threshold (calibrated P(synthetic) >= 0.5; softmax 0.5 for the imports);
- for the shipped model, the same on the held-out *test* split of
  models/splits.json (the rest of the corpus was used to train and
  calibrate it, so whole-corpus numbers flatter it), plus file-level scores
  of the live pipeline (all windows fused);
- the leave-one-source-out table from bench/loso.py, when it has been run.

Scores follow the AASIST reference recipe (first 64 600 samples of each file,
tiled if shorter), so numbers are comparable to the published ones.

Run from the repository root: ``python -m bench.eer``. Writes
bench/results/eer.json and bench/results/det.png.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import tempfile
from pathlib import Path

import numpy as np

from bench.metrics import bootstrap_eer, det_points, eer, rates_at
from streamguard import Guard, GuardConfig
from streamguard.config import bundled_model_path
from streamguard.detectors import VoiceCloneDetector
from streamguard.inference import OnnxModel
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
OUT = REPO / "bench" / "results"


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


def score_files(model: OnnxModel, audio: list[np.ndarray], batch: int = 8) -> np.ndarray:
    detector = VoiceCloneDetector(model.info)
    inputs = np.stack([detector.prepare(pcm16_to_float(pcm)) for pcm in audio])
    margins = []
    for start in range(0, len(inputs), batch):
        for row in model.run(inputs[start:start + batch]):
            margins.append(detector.score(row).margin)
    return np.array(margins)


async def pipeline_probabilities(model_path: Path, audio: list[np.ndarray]) -> np.ndarray:
    probs = []
    async with Guard.from_config(GuardConfig(model_path=model_path)) as guard:
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


def plot_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    ticks = np.array([0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for name, (fpr, fnr) in curves.items():
        clip = lambda v: norm.ppf(np.clip(v, 0.002, 0.998))  # noqa: E731
        ax.plot(clip(fpr), clip(fnr), label=name)
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_xlabel("false positive rate: bona fide flagged (%)")
    ax.set_ylabel("false negative rate: synthetic missed (%)")
    ax.set_title("DET, shared speech corpus (150 files)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description="EER on the shared speech corpus")
    parser.add_argument("--skip-aasist", action="store_true")
    args = parser.parse_args()
    if not SPEECH.exists():
        print(f"shared corpus not found at {SPEECH}")
        return 1
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
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        models: dict[str, Path] = {}
        if not args.skip_aasist:
            from streamguard.importers.aasist import import_aasist

            for name, ckpt in (("AASIST", "AASIST.pth"), ("AASIST-L", "AASIST-L.pth")):
                models[name] = import_aasist(SHARED_AASIST / ckpt, Path(tmp), name=name.lower())
        models["shipped"] = bundled_model_path()
        for name, path in models.items():
            model = OnnxModel(path, intra_op_threads=2)
            cal = model.info.calibration
            # Operating point: calibrated P(synthetic) >= 0.5, i.e. a*m + b >= 0.
            threshold = -cal.b / cal.a
            entry: dict = {"version": model.info.version, "calibration": cal.method}
            for cond, audio in conditions.items():
                margins = score_files(model, audio)
                entry[cond] = {"all": summarise(margins, labels, sources, speakers, threshold)}
                curves[f"{name} {cond}"] = det_points(margins, labels)
                if name == "shipped" and test_mask.any():
                    m = test_mask
                    entry[cond]["test_split"] = summarise(margins[m], labels[m], sources[m],
                                                          speakers[m], threshold)
                    probs = asyncio.run(pipeline_probabilities(path, [audio[i] for i in
                                                                      np.nonzero(m)[0]]))
                    entry[cond]["test_split_pipeline"] = summarise(
                        probs, labels[m], sources[m], speakers[m], 0.5)
                    curves[f"{name} {cond} test split"] = det_points(margins[m], labels[m])
                print_row(name, cond, entry[cond])
            results["models"][name] = entry
    if test_mask.any():
        results["test_split"] = {"files": int(test_mask.sum()),
                                 "bonafide": int((labels[test_mask] == 0).sum()),
                                 "spoof": int((labels[test_mask] == 1).sum())}
    if LOSO.exists():
        results["leave_one_source_out"] = json.loads(LOSO.read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "eer.json").write_text(json.dumps(results, indent=1, default=float))
    plot_det(curves, OUT / "det.png")
    print("wrote bench/results/eer.json and bench/results/det.png")
    return 0


def print_row(name: str, cond: str, entry: dict) -> None:
    for subset, s in entry.items():
        op = s["operating_point"]
        per = ", ".join(f"{k} {v['eer_pct']:.1f}" for k, v in s["per_source"].items())
        print(f"{name:9s} {cond:8s} {subset:20s} EER {s['eer_pct']:5.1f}% "
              f"CI [{s['eer_ci95_pct'][0]:.1f}, {s['eer_ci95_pct'][1]:.1f}]  "
              f"FPR {100 * op['fpr']:5.1f}% FNR {100 * op['fnr']:5.1f}% @op  | {per}")


if __name__ == "__main__":
    raise SystemExit(main())
