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
(no test file sets a scale), then summed with equal weight (``fused``), or
the phase z-score counted only above its genuine 90th percentile
(``fused_hinge``).

    nice -n 5 .venv/bin/python -m bench.relative_phase [CSV ...] [--shipped] \
        [--cache FILE.npz] [--out bench/results/relative_phase.json]

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

from bench.metrics import eer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "models"))

import train_voice_clone as tvc  # noqa: E402

OUT = REPO / "bench" / "results" / "relative_phase.json"
SR = 16_000
HOP = 160  # 10 ms frames
F0_MIN, F0_MAX = 60.0, 400.0
YIN_WINDOW = 400  # 25 ms integration window of the difference function
YIN_THRESHOLD = 0.2
HARMONICS = 16
BAND_TOP_HZ = 3800.0  # harmonics above this are left out: telephony keeps < 4 kHz
STAT_HARMONICS = slice(1, 12)  # RPS_2 .. RPS_12 (RPS_1 is 0 by definition)
RESIDUAL_HARMONICS = slice(1, 7)  # harmonics 2-7: present in every voice under 3.8 kHz
N_FEATURES = 4 * 11 + 3 * 6 + 1
ENVELOPE_FFT = 1024
SHRINKAGE = 0.05
HINGE_QUANTILE = 0.9

Features = Callable[[str, list[str]], np.ndarray]  # (channel, corpus keys) -> window statistics


def yin_f0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F0 per 10 ms frame by YIN (de Cheveigné & Kawahara 2002); 0 where unvoiced.

    Returns (f0, centre sample of each frame).
    """
    lag_min, lag_max = int(SR / F0_MAX), int(SR / F0_MIN)
    span = YIN_WINDOW + lag_max
    starts = np.arange(0, len(x) - span, HOP)
    if len(starts) == 0:
        return np.zeros(0), np.zeros(0, dtype=int)
    frames = x[starts[:, None] + np.arange(span)].astype(np.float64)
    n_fft = 1 << int(np.ceil(np.log2(2 * span)))
    head = np.fft.rfft(frames[:, :YIN_WINDOW], n_fft)
    full = np.fft.rfft(frames, n_fft)
    corr = np.fft.irfft(np.conj(head) * full, n_fft)[:, : lag_max + 1]
    sq = np.cumsum(np.pad(frames**2, ((0, 0), (1, 0))), axis=1)
    energy_at = sq[:, YIN_WINDOW : YIN_WINDOW + lag_max + 1] - sq[:, : lag_max + 1]
    diff = sq[:, YIN_WINDOW : YIN_WINDOW + 1] + energy_at - 2 * corr
    diff[:, 0] = 0.0
    lags = np.arange(lag_max + 1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(np.cumsum(diff[:, 1:], axis=1), 1e-12)
    band = cmnd[:, lag_min : lag_max + 1]
    dips = (band[:, 1:-1] < band[:, :-2]) & (band[:, 1:-1] <= band[:, 2:])
    below = dips & (band[:, 1:-1] < YIN_THRESHOLD)
    first = np.where(below.any(axis=1), below.argmax(axis=1), band[:, 1:-1].argmin(axis=1)) + 1
    rows = np.arange(len(band))
    a, b, c = band[rows, first - 1], band[rows, first], band[rows, first + 1]
    shift = np.clip(0.5 * (a - c) / np.maximum(a - 2 * b + c, 1e-12), -0.5, 0.5)
    lag = lag_min + first + shift
    level = 10 * np.log10(sq[:, YIN_WINDOW] / YIN_WINDOW + 1e-12)
    voiced = (b < YIN_THRESHOLD) & (level > level.max() - 40)
    return np.where(voiced, SR / lag, 0.0), starts + YIN_WINDOW // 2


def minimum_phase(freqs: np.ndarray, log_magnitude: np.ndarray) -> np.ndarray:
    """Phase response (radians) at ``freqs`` of the minimum-phase filter whose log
    magnitude is ``log_magnitude`` at ``freqs``, interpolated between them and held
    flat beyond (real cepstrum folded onto positive quefrencies)."""
    grid = np.arange(ENVELOPE_FFT // 2 + 1) * SR / ENVELOPE_FFT
    cepstrum = np.fft.irfft(np.interp(grid, freqs, log_magnitude), ENVELOPE_FFT)
    folded = np.zeros(ENVELOPE_FFT)
    folded[0] = cepstrum[0]
    folded[1 : ENVELOPE_FFT // 2] = 2 * cepstrum[1 : ENVELOPE_FFT // 2]
    folded[ENVELOPE_FFT // 2] = cepstrum[ENVELOPE_FFT // 2]
    phase = np.unwrap(np.imag(np.fft.rfft(folded)))
    return np.interp(freqs, grid, phase)


def harmonic_phases(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per voiced frame: RPS_k = wrap(φ_k − k·φ_1), and what is left of it once the
    RPS of the minimum-phase filter with the frame's harmonic magnitudes is taken
    away. Both (frames, HARMONICS), NaN above BAND_TOP_HZ.

    Each frame is a Hann window of three pitch periods centred on the frame, its
    DFT taken at exactly k·f0. The residual is near 0 when the frame is a pulse
    train through a minimum-phase filter, which is what source-filter vocoders
    such as WORLD synthesise; the glottal pulse of a human voice is not minimum
    phase, and leaves an offset.
    """
    f0, centres = yin_f0(x)
    rps_rows, residual_rows = [], []
    ks = np.arange(1, HARMONICS + 1)
    xd = x.astype(np.float64)
    for f, c in zip(f0, centres, strict=True):
        if f <= 0:
            continue
        n = int(3 * SR / f + 0.5) | 1
        a = c - n // 2
        if a < 0 or a + n > len(xd):
            continue
        in_band = ks * f <= BAND_TOP_HZ
        if in_band.sum() < 2:
            continue
        t = np.arange(n) - n // 2
        spectrum = np.exp(-2j * np.pi * np.outer(ks * f / SR, t)) @ (xd[a : a + n] * np.hanning(n))
        phase = np.angle(spectrum)
        rps = np.angle(np.exp(1j * (phase - ks * phase[0])))
        freqs = ks[in_band] * f
        theta = minimum_phase(freqs, np.log(np.abs(spectrum[in_band]) + 1e-9))
        residual = np.full(HARMONICS, np.nan)
        residual[in_band] = np.angle(np.exp(1j * (rps[in_band] - (theta - ks[in_band] * theta[0]))))
        rps[~in_band] = np.nan
        rps_rows.append(rps)
        residual_rows.append(residual)
    if not rps_rows:
        return np.zeros((0, HARMONICS)), np.zeros((0, HARMONICS))
    return np.array(rps_rows), np.array(residual_rows)


def _circular_stats(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resultant length, mean cosine and mean sine per column, NaN-aware."""
    ok = ~np.isnan(angles)
    z = np.where(ok, np.exp(1j * np.nan_to_num(angles)), 0)
    mean = z.sum(axis=0) / ok.sum(axis=0).clip(1)
    return np.abs(mean), mean.real, mean.imag


def window_features(x: np.ndarray) -> np.ndarray:
    """Per-window phase statistics. RPS of harmonics 2-12: how concentrated each
    is (resultant length), its mean cosine, how much it moves frame to frame (mean
    |Δ| and mean cos Δ). Minimum-phase residual of harmonics 2-7: resultant length,
    mean cosine and sine. And the number of voiced frames."""
    rps, residual = harmonic_phases(x)
    if len(rps) < 5:
        return np.zeros(N_FEATURES)
    r = rps[:, STAT_HARMONICS]
    ok = ~np.isnan(r)
    z = np.where(ok, np.exp(1j * np.nan_to_num(r)), 0)
    mean = z.sum(axis=0) / ok.sum(axis=0).clip(1)
    step = np.angle(z[1:] * np.conj(z[:-1]))
    ok_step = ok[1:] & ok[:-1]
    n_step = ok_step.sum(axis=0).clip(1)
    return np.r_[
        np.abs(mean),
        mean.real,
        np.where(ok_step, np.abs(step), 0).sum(axis=0) / n_step,
        np.where(ok_step, np.cos(step), 0).sum(axis=0) / n_step,
        *_circular_stats(residual[:, RESIDUAL_HARMONICS]),
        np.log(len(rps)),
    ]


class GenuinePhaseModel:
    """A Gaussian of genuine windows' RPS statistics; score = log Mahalanobis distance."""

    def __init__(self, features: np.ndarray) -> None:
        self.mean = features.mean(axis=0)
        self.scale = features.std(axis=0) + 1e-6
        z = (features - self.mean) / self.scale
        cov = np.cov(z.T) + SHRINKAGE * np.eye(z.shape[1])
        self.precision = np.linalg.inv(cov)

    def score(self, features: np.ndarray) -> np.ndarray:
        z = (features - self.mean) / self.scale
        return np.log(np.einsum("ij,jk,ik->i", z, self.precision, z) + 1e-9)


def fit_genuine_model(features: Features, keys: list[str]) -> GenuinePhaseModel:
    """The genuine model of ``keys``' windows, wideband and μ-law together."""
    return GenuinePhaseModel(np.vstack([features(ch, keys) for ch in ("wideband", "mulaw8k")]))


def read_scores(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "split" not in rows[0]:
        raise SystemExit(f"error: {path} has no 'split' column: rerun bench.loso --scores "
                         "(the genuine calibration files are the fusion's reference)")
    return rows


def z_by(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    return (values - reference.mean()) / (reference.std() + 1e-9)


def fusions(cal_cnn: np.ndarray, cal_rps: np.ndarray, cnn: np.ndarray,
            rps: np.ndarray) -> dict[str, np.ndarray]:
    """Two fusions of z-scores normalised by the genuine calibration files: the
    plain sum, and the CNN plus only the part of the phase z-score above its
    genuine 90th percentile (the cue speaks only when it is sure)."""
    z_cnn, z_rps = z_by(cal_cnn, cnn), z_by(cal_rps, rps)
    floor = np.quantile(z_by(cal_rps, cal_rps), HINGE_QUANTILE)
    return {"fused": z_cnn + z_rps, "fused_hinge": z_cnn + np.maximum(0.0, z_rps - floor)}


def summary(e: dict) -> str:
    return (f"EER wideband / μ-law: CNN {e['eer_pct_cnn_wideband']:.1f} / "
            f"{e['eer_pct_cnn_mulaw8k']:.1f}, RPS {e['eer_pct_rps_wideband']:.1f} / "
            f"{e['eer_pct_rps_mulaw8k']:.1f}, fused {e['eer_pct_fused_wideband']:.1f} / "
            f"{e['eer_pct_fused_mulaw8k']:.1f}, hinge {e['eer_pct_fused_hinge_wideband']:.1f} / "
            f"{e['eer_pct_fused_hinge_mulaw8k']:.1f}")


def eers(y: np.ndarray, scores: dict[str, np.ndarray], channel: str) -> dict:
    return {f"eer_pct_{name}_{channel}": round(100 * eer(s, y)[0], 2)
            for name, s in scores.items()}


def shipped_fusion(items: dict, features: Features) -> dict:
    """The shipped model's margins fused with the cue, on the model's own split."""
    from streamguard.config import bundled_model_path
    from streamguard.detectors import VoiceCloneDetector
    from streamguard.inference import OnnxModel
    from streamguard.inference.onnx_model import ModelInfo

    splits = json.loads((REPO / "models" / "splits.json").read_text())
    split_of = {key: splits[key.split("/", 1)[0]].get(key.split("/", 1)[1], "")
                for key in items}
    model = OnnxModel(bundled_model_path("voice_clone.onnx"))
    detector = VoiceCloneDetector(model.info)
    sidecar = ModelInfo.from_sidecar(bundled_model_path("voice_clone.json"))
    trained = set(sidecar.extra.get("trained_families", []))

    def margins(keys: list[str], channel: str) -> np.ndarray:
        windows = tvc.channel_windows([items[k] for k in keys], channel)
        inputs = np.stack([detector.prepare(w) for w in windows])
        return np.array([detector.score(row).margin
                         for start in range(0, len(inputs), 16)
                         for row in model.run(inputs[start:start + 16])])

    genuine = {split: [k for k, it in items.items() if it.label == 0 and split_of[k] == split]
               for split in ("train", "calib", "test")}
    phase = fit_genuine_model(features, genuine["train"])
    families = sorted({it.family for it in items.values() if it.label == 1})
    out: dict = {"model": sidecar.version, "trained_families": sorted(trained),
                 "n_bonafide": len(genuine["test"]), "families": {}}
    for channel in ("wideband", "mulaw8k"):
        cal_cnn = margins(genuine["calib"], channel)
        cal_rps = phase.score(features(channel, genuine["calib"]))
        g_cnn = margins(genuine["test"], channel)
        g_rps = phase.score(features(channel, genuine["test"]))
        for fam in families:
            keys = [k for k, it in items.items() if it.label == 1 and it.family == fam
                    and (fam not in trained or split_of[k] == "test")]
            cnn = np.r_[g_cnn, margins(keys, channel)]
            rps = np.r_[g_rps, phase.score(features(channel, keys))]
            y = np.r_[np.zeros(len(g_cnn)), np.ones(len(keys))].astype(int)
            entry = out["families"].setdefault(fam, {"n_spoof": len(keys),
                                                     "seen_by_cnn": fam in trained})
            entry.update(eers(y, {"cnn": cnn, "rps": rps,
                                  **fusions(cal_cnn, cal_rps, cnn, rps)}, channel))
    for fam, e in out["families"].items():
        print(f"shipped {fam:18s} {'seen' if e['seen_by_cnn'] else 'unseen':6s} {summary(e)}")
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
    rows_out: dict = {}
    for path in args.scores:
        rows = read_scores(path)
        for channel in ("wideband", "mulaw8k"):
            cal = [r for r in rows if r["channel"] == channel and r["split"] == "calibration"]
            test = [r for r in rows if r["channel"] == channel and r["split"] == "test"]
            y = np.array([int(r["label"]) for r in test])
            cnn = np.array([float(r["margin"]) for r in test])
            cnn_cal = np.array([float(r["margin"]) for r in cal])
            rps = model.score(features(channel, [r["key"] for r in test]))
            rps_cal = model.score(features(channel, [r["key"] for r in cal]))
            entry = rows_out.setdefault(path.stem, {"held_out": test[0]["held_out"],
                                                    "n_spoof": int(y.sum()),
                                                    "n_bonafide": int((y == 0).sum()),
                                                    "n_calibration_bonafide": len(cal)})
            entry.update(eers(y, {"cnn": cnn, "rps": rps,
                                  **fusions(cnn_cal, rps_cal, cnn, rps)}, channel))
        e = rows_out[path.stem]
        print(f"{path.stem:40s} {e['held_out']:16s} {summary(e)}", flush=True)
    genuine_test = [k for k, it in items.items() if it.split == "test" and it.label == 0]
    families = sorted({it.family for it in items.values() if it.label == 1})
    one_class: dict = {}
    for channel in ("wideband", "mulaw8k"):
        g = model.score(features(channel, genuine_test))
        for fam in families:
            keys = [k for k, it in items.items() if it.label == 1 and it.family == fam]
            s = model.score(features(channel, keys))
            y = np.r_[np.zeros(len(g)), np.ones(len(s))].astype(int)
            one_class.setdefault(fam, {"n_spoof": len(keys)})[f"eer_pct_{channel}"] = round(
                100 * eer(np.r_[g, s], y)[0], 2)
    doc = {
        "protocol": ("one-class RPS cue: Gaussian of per-window relative-phase-shift "
                     "statistics (harmonics 2-12, YIN F0, 3-period Hann windows) fitted on "
                     "the genuine training split (wideband and 8 kHz μ-law), score = log "
                     "Mahalanobis distance; fused with bench.loso CNN margins as the sum of "
                     "z-scores normalised by the genuine calibration split (fused), or the CNN "
                     "z-score plus the phase z-score above its genuine calibration 90th "
                     "percentile (fused_hinge); EER of all files "
                     "of the held-out family vs the genuine test split"),
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
