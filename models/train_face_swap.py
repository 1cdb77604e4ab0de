"""Train StreamGuard's shipped face-swap classifier with self-blended images.

    nice -n 10 .venv/bin/python models/train_face_swap.py [--frames 1600] [--epochs 14]

Writes ``streamguard/models/face_swap.onnx`` + ``face_swap.json`` (the
sidecar carries the Platt calibration and every measured number; the model
card ``face_swap.md`` quotes them).

Data (sources and licences in models/DATA_SOURCES.md, "Face-swap classifier"):

- train: random webcam-like frames (zoom, rotation, shift, flip in a 640x480
  canvas) made from public-domain portraits of 4 people shipped in packages:
  ``astronaut.png`` (scikit-image; copy in ../shared/reference/face/media),
  ``grace_hopper.jpg`` (matplotlib sample data), and the official White House
  photographs ``obama.jpg``, ``obama2.jpg``, ``obama3.jpg``, ``biden.jpg`` in
  the ``face_recognition`` 1.3.0 sdist's tests/test_images (fetched with
  ``pip download --no-deps --no-binary :all:`` into .data/cache/face). Each
  person gets an equal share of the frames. BlazeFace finds the
  face, the runtime crop (:func:`streamguard.detectors.face.crop_face`) cuts
  it; each real crop is paired with a self-blended copy (models/face_sbi.py)
  of the same frame, and both get the same class-neutral degradations.
- calibration (Platt, held out from training): the first 63 frames
  (0-62) of ``astronaut_real_640x480_25fps_5s.mp4`` (real, H.264) and a
  self-blended version of each of them (swapped).
- test: frames 63-124 of the real clip vs frames 63-124 of the crude
  face-swap clip (and all 125 frames of each for reference). The swap clip is
  never used for training or calibration.

Fixed seeds; CPU only; ~10 min on 2 shared cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.face_sbi import degrade, random_affine_frame, self_blend  # noqa: E402
from streamguard.detectors.face import FaceDetector, crop_face  # noqa: E402

SHARED = ROOT.parent / "shared" / "reference" / "face" / "media"
CACHE = ROOT / ".data" / "cache" / "face"
# PyPI face_recognition 1.3.0 sdist (MIT): its tests/test_images are official White House
# photographs (US federal government works, public domain). Fetched with pip, never committed.
FR_SDIST = "face_recognition==1.3.0"
FR_MEMBERS = {"obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama",
              "biden.jpg": "biden"}
OUT = ROOT / "streamguard" / "models"
SIZE = 128
CROP_SCALE = 1.3
CALIB_FRAMES = range(0, 63)
TEST_FRAMES = range(63, 125)
VERSION = "face-sbi-1.0.0"


class FaceSwapNet(nn.Module):
    """Meso4-style CNN for 128x128 crops; NHWC [0, 1] in, logit(swapped) out."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, k: int, pool: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(),
                                 nn.BatchNorm2d(cout), nn.MaxPool2d(pool))

        self.features = nn.Sequential(block(3, 8, 3, 2), block(8, 16, 5, 2),
                                      block(16, 16, 5, 2), block(16, 32, 5, 4))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(32 * 4 * 4, 16),
                                  nn.LeakyReLU(0.1), nn.Dropout(0.5), nn.Linear(16, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2) * 2.0 - 1.0
        out: torch.Tensor = self.head(self.features(x))
        return out


def find_image(name: str) -> Path:
    candidates = []
    if name == "grace_hopper.jpg":
        import matplotlib

        candidates.append(Path(matplotlib.get_data_path()) / "sample_data" / name)
    if name == "astronaut.png":
        try:
            import skimage

            candidates.append(Path(skimage.__file__).parent / "data" / name)
        except ImportError:
            pass
    candidates.append(SHARED / name)
    for c in candidates:
        if c.is_file():
            return c
    raise SystemExit(f"cannot find {name} (looked in {[str(c) for c in candidates]})")


def fetch_face_recognition_images() -> dict[str, Path]:
    """``tests/test_images`` portraits from the face_recognition sdist, cached in .data/."""
    import subprocess
    import tarfile

    target = CACHE / "face_recognition-1.3.0"
    if not all((target / m).is_file() for m in FR_MEMBERS):
        CACHE.mkdir(parents=True, exist_ok=True)
        sdists = sorted(CACHE.glob("face_recognition-1.3.0.tar.gz"))
        if not sdists:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "--no-binary", ":all:", FR_SDIST, "-d", str(CACHE)], check=True)
            sdists = sorted(CACHE.glob("face_recognition-1.3.0.tar.gz"))
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdists[0]) as tar:
            for member in FR_MEMBERS:
                src = tar.extractfile(f"face_recognition-1.3.0/tests/test_images/{member}")
                assert src is not None
                (target / member).write_bytes(src.read())
    return {m: target / m for m in FR_MEMBERS}


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_train(detector: FaceDetector, n_frames: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    paths = {n: find_image(n) for n in ("astronaut.png", "grace_hopper.jpg")}
    paths.update(fetch_face_recognition_images())
    stills = {n: np.asarray(Image.open(p).convert("RGB")) for n, p in paths.items()}
    boxes = {n: detector.detect(img)[0] for n, img in stills.items()}
    crops, labels = [], []
    counts = dict.fromkeys(stills, 0)
    # identities get equal shares: astronaut, grace_hopper, obama (3 photos), biden
    identity = {n: FR_MEMBERS.get(n, n) for n in stills}
    people = sorted(set(identity.values()))
    for i in range(n_frames):
        person = people[i % len(people)]
        options = [n for n in stills if identity[n] == person]
        name = options[int(rng.integers(len(options)))]
        frame = random_affine_frame(stills[name], rng, face_box=boxes[name])
        faces = detector.detect(frame)
        if not faces:
            continue
        box = faces[0]
        sbi = self_blend(frame, box, rng)
        crops.append(degrade(crop_face(frame, box, SIZE, CROP_SCALE), rng))
        labels.append(0)
        crops.append(degrade(crop_face(sbi, box, SIZE, CROP_SCALE), rng))
        labels.append(1)
        counts[name] += 1
    return np.stack(crops), np.asarray(labels, np.float32), counts


def clip_crops(detector: FaceDetector, frames: list[np.ndarray], indices: range,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, list[int]]:
    """Crops of the top face per frame; with ``rng`` also an SBI per frame (label 1)."""
    crops, labels = [], []
    for i in indices:
        faces = detector.detect(frames[i])
        if not faces:
            continue
        crops.append(crop_face(frames[i], faces[0], SIZE, CROP_SCALE))
        labels.append(0)
        if rng is not None:
            crops.append(crop_face(self_blend(frames[i], faces[0], rng), faces[0], SIZE,
                                   CROP_SCALE))
            labels.append(1)
    return np.stack(crops), labels


def margins(net: nn.Module, crops: np.ndarray) -> np.ndarray:
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), 128):
            x = torch.from_numpy(crops[i:i + 128].astype(np.float32) / 255.0)
            out.append(net(x)[:, 0].numpy())
    return np.concatenate(out).astype(np.float64)


def platt(m: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic regression of y on m (Newton, light L2 on a), with Platt's target smoothing."""
    n1, n0 = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    a, b = 1.0, 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a * m + b)))
        g = np.array([np.sum((p - t) * m) + 1e-3 * a, np.sum(p - t)])
        w = p * (1 - p)
        h = np.array([[np.sum(w * m * m) + 1e-3, np.sum(w * m)], [np.sum(w * m), np.sum(w)]])
        step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)


def auc_eer(neg: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    """AUC (P(pos score > neg score)) and EER; higher score = more likely swapped."""
    auc = float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))
    thresholds = np.unique(np.concatenate([neg, pos]))
    best, eer = 2.0, 1.0
    for th in thresholds:
        fpr, fnr = float(np.mean(neg >= th)), float(np.mean(pos < th))
        if abs(fpr - fnr) < best:
            best, eer = abs(fpr - fnr), (fpr + fnr) / 2
    return auc, eer


def export(net: nn.Module, path: Path) -> float:
    import warnings

    import onnxruntime as ort

    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, SIZE, SIZE, 3),), str(path),
                          input_names=["image"], output_names=["logit_swapped"],
                          dynamic_axes={"image": {0: "batch"}, "logit_swapped": {0: "batch"}},
                          opset_version=17, dynamo=False)
    x = np.random.default_rng(1).random((4, SIZE, SIZE, 3), dtype=np.float32)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["logit_swapped"], {"image": x})[0]
    return float(np.abs(ref - got).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    started = time.time()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    detector = FaceDetector()

    x_train, y_train, counts = build_train(detector, args.frames, rng)
    sources_sha = {n: sha256(p) for n, p in [(n, find_image(n)) for n in (
        "astronaut.png", "grace_hopper.jpg")] + list(fetch_face_recognition_images().items())}
    print(f"train crops: {len(x_train)} ({counts}) in {time.time() - started:.0f}s", flush=True)
    real_frames = decode(SHARED / "astronaut_real_640x480_25fps_5s.mp4")
    swap_frames = decode(SHARED / "astronaut_faceswap_640x480_25fps_5s.mp4")
    x_cal, y_cal_l = clip_crops(detector, real_frames, CALIB_FRAMES, np.random.default_rng(1))
    y_cal = np.asarray(y_cal_l, np.float64)

    net = FaceSwapNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps_per_epoch = int(np.ceil(len(x_train) / 64))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3,
                                                total_steps=args.epochs * steps_per_epoch)
    loss_fn = nn.BCEWithLogitsLoss()
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            xb = xt[idx].float() / 255.0
            if torch.rand(1, generator=gen).item() < 0.5:
                xb = xb.flip(2)
            loss = loss_fn(net(xb)[:, 0], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        m_cal = margins(net, x_cal)
        auc, _ = auc_eer(m_cal[y_cal == 0], m_cal[y_cal == 1])
        print(f"epoch {epoch + 1}: loss {total / len(xt):.4f}  calib AUC {auc:.3f}  "
              f"({time.time() - started:.0f}s)", flush=True)

    m_cal = margins(net, x_cal)
    a, b = platt(m_cal, y_cal)
    cal_auc, cal_eer = auc_eer(m_cal[y_cal == 0], m_cal[y_cal == 1])

    def probs(frames: list[np.ndarray], idx: range) -> np.ndarray:
        crops, _ = clip_crops(detector, frames, idx)
        return 1 / (1 + np.exp(-(a * margins(net, crops) + b)))

    p_real_test, p_swap_test = probs(real_frames, TEST_FRAMES), probs(swap_frames, TEST_FRAMES)
    p_real_all, p_swap_all = probs(real_frames, range(125)), probs(swap_frames, range(125))
    test_auc, test_eer = auc_eer(p_real_test, p_swap_test)
    all_auc, all_eer = auc_eer(p_real_all, p_swap_all)

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "face_swap.onnx"
    diff = export(net, onnx_path)
    params = sum(p.numel() for p in net.parameters())
    metrics = {
        "calibration_set": {"n": len(y_cal), "auc": cal_auc, "eer": cal_eer,
                            "what": "real clip frames 0-62 vs self-blended copies"},
        "test_heldout_frames_63_124": {
            "auc": test_auc, "eer": test_eer,
            "real_mean_p_swapped": float(p_real_test.mean()),
            "real_frac_flagged_0.5": float(np.mean(p_real_test > 0.5)),
            "swap_mean_p_swapped": float(p_swap_test.mean()),
            "swap_min_p_swapped": float(p_swap_test.min()),
            "swap_frac_flagged_0.5": float(np.mean(p_swap_test > 0.5))},
        "all_frames_0_124": {
            "auc": all_auc, "eer": all_eer,
            "real_mean_p_swapped": float(p_real_all.mean()),
            "real_frac_flagged_0.5": float(np.mean(p_real_all > 0.5)),
            "swap_mean_p_swapped": float(p_swap_all.mean()),
            "swap_frac_flagged_0.5": float(np.mean(p_swap_all > 0.5))},
    }
    sidecar = {
        "name": "face_swap",
        "version": VERSION,
        "architecture": "FaceSwapNet (Meso4-style CNN, 128x128)",
        "task": "face_swap",
        "input_name": "image",
        "input_layout": "NHWC",
        "input_size": [SIZE, SIZE],
        "color": "RGB",
        "input_scaling": "pixel / 255 -> [0, 1], float32 (the graph maps it to [-1, 1])",
        "crop": {"method": "square", "scale": CROP_SCALE,
                 "note": "streamguard.detectors.face.crop_face on a BlazeFace box"},
        "output_name": "logit_swapped",
        "output_kind": "logit",
        "output_positive": "swapped",
        "score": "P(swapped) = sigmoid(a * logit_swapped + b)",
        "calibration": {"method": "platt", "a": a, "b": b},
        "calibration_n": len(y_cal),
        "provenance": (
            "trained by models/train_face_swap.py (seed 0) on self-blended images of public-"
            "domain portraits of 4 people (scikit-image astronaut, matplotlib grace_hopper, "
            "face_recognition 1.3.0 sdist test images: official White House photos); "
            "Platt-calibrated on frames 0-62 of the shared real astronaut clip + SBIs"),
        "training": {"frames": args.frames, "crops": len(x_train), "per_source": counts,
                     "epochs": args.epochs, "params": params,
                     "seconds": round(time.time() - started, 1),
                     "sources_sha256": sources_sha},
        "metrics": metrics,
        "export": {"opset": 17, "torch": torch.__version__, "max_abs_diff_vs_torch": diff},
    }
    (args.out / "face_swap.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} B, {params} params) "
          f"in {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
