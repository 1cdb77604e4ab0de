"""Fit the relative-phase cue that ships beside the voice-clone CNN.

Writes ``streamguard/models/voice_phase.json`` (see
``streamguard/detectors/phase_cue.py`` for the cue itself). Every step uses
the split the shipped CNN was trained on (``models/splits.json``), so no
test file shapes it:

1. a Gaussian of per-window phase statistics on the genuine *training*
   files, wideband and 8 kHz μ-law: the cue never sees a spoof;
2. the genuine *calibration* files (both channels) put the phase distance on
   a z scale, set the hinge floor (the phase z's 90th percentile), and give
   the CNN margin's spread, the unit the phase excess is added in.

No spoof is used and no weight is tuned: the fused margin keeps the CNN's
own Platt calibration, so where the cue is silent the detector's
probabilities are exactly the CNN's.

    .venv/bin/python models/fit_phase_cue.py     # ~3 min; needs the generated corpus

Deterministic: no random draws; the same corpus gives the same file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "models"))

import train_voice_clone as tvc  # noqa: E402

from streamguard.config import bundled_model_path  # noqa: E402
from streamguard.detectors.phase_cue import (  # noqa: E402
    HINGE_QUANTILE,
    PHASE_CUE_FILE,
    GenuinePhaseModel,
    PhaseCue,
    window_features,
)
from streamguard.detectors.voice_clone import VoiceCloneDetector  # noqa: E402
from streamguard.inference.onnx_model import OnnxModel  # noqa: E402

VERSION = "rps-1.0.0"
CHANNELS = ("wideband", "mulaw8k")
OUT = REPO / "streamguard" / "models" / PHASE_CUE_FILE


def shipped_split(items: dict[str, tvc.Item]) -> dict[str, str]:
    """Each corpus key's split in models/splits.json ('' for files it does not list)."""
    splits = json.loads((REPO / "models" / "splits.json").read_text())
    return {key: splits[key.split("/", 1)[0]].get(key.split("/", 1)[1], "") for key in items}


def cnn_margins(model: OnnxModel, windows: np.ndarray, batch: int = 16) -> np.ndarray:
    """The CNN's spoof margin of each window, as the runtime computes it."""
    detector = VoiceCloneDetector(model.info)
    inputs = np.stack([detector.prepare(w) for w in windows])
    return np.array([detector.score(row).margin for start in range(0, len(inputs), batch)
                     for row in model.run(inputs[start:start + batch])])


def fit(items: dict[str, tvc.Item], model: OnnxModel) -> PhaseCue:
    split = shipped_split(items)
    genuine_train = [it for k, it in items.items() if it.label == 0 and split[k] == "train"]
    calibration = [it for k, it in items.items() if it.label == 0 and split[k] == "calib"]
    genuine = GenuinePhaseModel.fit(np.vstack([
        np.stack([window_features(w) for w in tvc.channel_windows(genuine_train, ch)])
        for ch in CHANNELS]))
    tvc.log(f"genuine phase model: {len(genuine_train)} training files x {len(CHANNELS)} channels")
    windows = [tvc.channel_windows(calibration, ch) for ch in CHANNELS]
    margin = np.concatenate([cnn_margins(model, w) for w in windows])
    distance = np.concatenate([genuine.window_distances(w) for w in windows])
    judged = distance[~np.isnan(distance)]
    phase_mean, phase_sd = float(judged.mean()), float(judged.std())
    floor = float(np.quantile((judged - phase_mean) / phase_sd, HINGE_QUANTILE))
    tvc.log(f"references: {len(margin)} genuine calibration windows, "
            f"{len(margin) - len(judged)} with too few voiced frames; "
            f"phase floor z = {floor:.2f}")
    return PhaseCue(
        version=VERSION, pairs_with=model.info.version, genuine=genuine,
        cnn_sd=float(margin.std()), phase_mean=phase_mean, phase_sd=phase_sd,
        phase_floor=floor,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not tvc.corpus_ready():
        raise SystemExit("error: no generated corpus: run models/synth_corpus.py first")
    items = {it.key: it for it in tvc.load_all(tvc.gather(True, 0))}
    model = OnnxModel(bundled_model_path())
    cue = fit(items, model)
    doc = {"_doc": ("Relative-phase cue fused with the voice-clone CNN named in pairs_with; "
                    "written by models/fit_phase_cue.py, read by "
                    "streamguard/detectors/phase_cue.py"),
           **cue.to_dict(),
           "fit_on": {"genuine_model": "genuine training split of models/splits.json, "
                                       "wideband and 8 kHz mu-law",
                      "references": "genuine calibration split, both channels",
                      "hinge_quantile": HINGE_QUANTILE}}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    tvc.log(f"wrote {args.out} ({cue.version}, pairs with {cue.pairs_with})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
