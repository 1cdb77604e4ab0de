"""Face pipeline bench: throughput and detection quality on the shared media.

Part 1 (speed, ONNX Runtime, 1 intra-op thread, 640x480 RGB frames from the
shared real clip): BlazeFace detection per frame (resize + letterbox +
inference + NMS), crop + classification per face for the shipped model and
each imported MesoNet, and the whole pipeline (detect + crop + classify one
face). From these: frames/s per core, and how many participants one core can
score at 5 sampled frames/s each (one face per participant). The reference
UltraFace RFB-320 detector is timed too (reference only, never shipped).

Part 2 (quality): every frame (125 + 125) of the shared real and crude
face-swap clips goes through BlazeFace -> crop -> classifier. Reported per
model: mean / min / max P(swapped), fraction flagged at 0.5, AUC and EER of
real vs swap frames. MesoNet's published output is P(real), so
P(swapped) = 1 - P(real) (uncalibrated). The shipped model was calibrated on
frames 0-62 of the real clip, so its held-out numbers (frames 63-124) are
reported separately.

    python -m bench.face [--repeats 60]

Needs the dev extra for the MesoNet imports (torch, h5py) and
../shared/reference/face. Writes bench/results/face.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import onnxruntime as ort

from streamguard.detectors.face import FaceDetector, resize_rgb
from streamguard.detectors.face_swap import FaceSwapDetector

REPO = Path(__file__).resolve().parents[1]
REF = REPO.parent / "shared" / "reference" / "face"
MEDIA = REF / "media"
RESULTS = REPO / "bench" / "results" / "face.json"
MESONETS = ["Meso4_DF", "Meso4_F2F", "MesoInception_DF", "MesoInception_F2F"]
CLIPS = {"real": "astronaut_real_640x480_25fps_5s.mp4",
         "swap": "astronaut_faceswap_640x480_25fps_5s.mp4"}


def decode(name: str) -> list[np.ndarray]:
    with av.open(str(MEDIA / name)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def timed(fn: Any, repeats: int) -> dict[str, float]:
    fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    arr = np.asarray(samples)
    return {"median_ms": round(float(np.median(arr)), 3),
            "p90_ms": round(float(np.percentile(arr, 90)), 3)}


def auc_eer(neg: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    auc = float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))
    best, eer = 2.0, 1.0
    for th in np.unique(np.concatenate([neg, pos])):
        fpr, fnr = float(np.mean(neg >= th)), float(np.mean(pos < th))
        if abs(fpr - fnr) < best:
            best, eer = abs(fpr - fnr), (fpr + fnr) / 2
    return auc, eer


def summary(real: np.ndarray, swap: np.ndarray) -> dict[str, float]:
    auc, eer = auc_eer(real, swap)
    return {
        "auc": round(auc, 4), "eer": round(eer, 4),
        "real_mean_p_swapped": round(float(real.mean()), 4),
        "real_max_p_swapped": round(float(real.max()), 4),
        "real_frac_flagged": round(float(np.mean(real > 0.5)), 4),
        "swap_mean_p_swapped": round(float(swap.mean()), 4),
        "swap_min_p_swapped": round(float(swap.min()), 4),
        "swap_frac_flagged": round(float(np.mean(swap > 0.5)), 4),
    }


def rfb_detect_ms(frame: np.ndarray, repeats: int) -> dict[str, float]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(REF / "version-RFB-320.onnx"), opts,
                                providers=["CPUExecutionProvider"])

    def run() -> None:
        x = (resize_rgb(frame, 320, 240).astype(np.float32) - 127.0) / 128.0
        scores, boxes = sess.run(["scores", "boxes"], {"input": x.transpose(2, 0, 1)[None]})
        keep = scores[0, :, 1] > 0.7
        _ = boxes[0][keep]

    return timed(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    clips = {k: decode(v) for k, v in CLIPS.items()}
    detector = FaceDetector(intra_op_threads=1)
    models: dict[str, FaceSwapDetector] = {"shipped": FaceSwapDetector(intra_op_threads=1)}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from streamguard.importers.mesonet import import_mesonet

            for name in MESONETS:
                path = import_mesonet(REF / f"{name}.h5", Path(tmp))
                models[name] = FaceSwapDetector(path, intra_op_threads=1)
        except ImportError as exc:
            print(f"skipping MesoNet imports: {exc}")

        frame = clips["real"][60]
        box = detector.detect(frame)[0]
        speed: dict[str, Any] = {
            "frame": "640x480 RGB (real clip frame 60), one face",
            "detector_blazeface": timed(lambda: detector.detect(frame), args.repeats),
            "detector_rfb320_reference": rfb_detect_ms(frame, args.repeats),
            "classifiers": {},
        }
        for name, clf in models.items():
            crop = clf.crop(frame, box)
            crop_ms = timed(lambda c=clf: c.crop(frame, box), args.repeats)
            cls_ms = timed(lambda c=clf, x=crop: c.score_crops(x[None]), args.repeats)
            pipe = timed(lambda c=clf: c.score_faces(frame, detector.detect(frame)),
                         args.repeats)
            per_frame = pipe["median_ms"]
            speed["classifiers"][name] = {
                "input": clf.info.input_size[0],
                "onnx_bytes": clf.path.stat().st_size,
                "crop": crop_ms, "classify_batch1": cls_ms,
                "pipeline_detect_crop_classify": pipe,
                "frames_per_s_per_core": round(1000 / per_frame, 1),
                "participants_per_core_at_5fps": int(1000 / per_frame // 5),
            }

        quality: dict[str, Any] = {}
        for name, clf in models.items():
            probs = {}
            for kind, frames in clips.items():
                out = []
                for f in frames:
                    faces = detector.detect(f)
                    out.append(clf.score_faces(f, faces[:1])[0].probability if faces
                               else float("nan"))
                probs[kind] = np.asarray(out)
            missing = {k: int(np.isnan(v).sum()) for k, v in probs.items()}
            real, swap = (np.nan_to_num(probs[k], nan=0.0) for k in ("real", "swap"))
            quality[name] = {"all_frames": summary(real, swap), "frames_without_face": missing}
            if name == "shipped":
                quality[name]["heldout_frames_63_124"] = summary(real[63:], swap[63:])

    published = json.loads((REF / "media_scores_summary.json").read_text())
    result = {
        "bench": "face", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                    "onnxruntime": ort.__version__, "threads": 1},
        "speed": speed,
        "quality": quality,
        "published_mesonet_on_rfb_crops_p_real": {
            k: {m: published[k][m]["mean"] for m in MESONETS} for k in ("real", "faceswap")},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
