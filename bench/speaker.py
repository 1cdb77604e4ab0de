"""Speaker-verification quality and latency of the GE2E encoder on the shared GE2E audio.

What it measures (numbers go into models/SPEAKER.md):

- parity: all 40 utterance embeddings against resemblyzer's (ref_embeddings.npz);
- EER over all utterance pairs (60 same-speaker, 720 different-speaker) for full
  utterances and for the first 3 s and 1.6 s of the preprocessed speech
  (crop vs crop, and crop vs the other full utterances, as in speaker_eval.json),
  wideband and after an 8 kHz G.711 μ-law round trip, plus μ-law live audio
  against wideband enrolment (the usual deployment: enrolled in an app, called
  on a phone line); 95 % bootstrap intervals resample speakers / speaker pairs;
- coverage of the running voiceprint's similarity interval;
- the enrolment several-speakers check on single voices vs two-voice splices;
- latency per 1.6 s partial (mel + network), alone and batched, both engines.

Ten speakers and 40 utterances are a small set: the intervals are wide and an
EER of 0 means "no error seen", not "no error". Run from the repository root:
``python -m bench.speaker``; writes bench/results/speaker.json.
"""

from __future__ import annotations

import os

# One BLAS thread, like ONNX Runtime's intra_op=1: on a shared 2-core machine a second
# BLAS thread only spins against other jobs. Must be set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import itertools
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.eer import phone_channel
from bench.metrics import bootstrap_eer, eer
from streamguard.enrolment import _two_group_consistency
from streamguard.media import decode_file, pcm16_to_float
from streamguard.speaker import (
    RunningVoiceprint,
    SpeakerEncoder,
    cosine,
    default_checkpoint,
    embed_speaker,
)
from streamguard.speaker.mel import partial_mels, preprocess

REPO = Path(__file__).resolve().parents[1]
GE2E = REPO.parent / "shared" / "reference" / "ge2e"
OUT = REPO / "bench" / "results"
CROPS = {"full": None, "3s": 48000, "1.6s": 25600}


def pair_eer(scores: list[float], same: list[bool], groups: list[str]) -> dict[str, Any]:
    s, y, g = np.array(scores), np.array(same, dtype=int), np.array(groups)
    value, threshold = eer(s, y)
    low, high = bootstrap_eer(s, y, groups=g, rounds=500)
    return {"eer_pct": round(100 * value, 2), "ci95_pct": [round(100 * low, 2),
                                                           round(100 * high, 2)],
            "threshold": round(threshold, 4), "n_same": int(y.sum()),
            "n_different": int((1 - y).sum()),
            "same_mean": round(float(s[y == 1].mean()), 4),
            "different_mean": round(float(s[y == 0].mean()), 4),
            "different_max": round(float(s[y == 0].max()), 4)}


def embed_all(encoder: SpeakerEncoder, wavs: list[np.ndarray]) -> dict[str, np.ndarray]:
    pre = [preprocess(w) for w in wavs]
    out = {}
    for name, crop in CROPS.items():
        out[name] = np.stack([encoder.embed_preprocessed(p if crop is None else p[:crop]).embedding
                              for p in pre])
    return out


def verification(test: dict[str, np.ndarray], enrol: dict[str, np.ndarray],
                 speakers: list[str]) -> dict[str, Any]:
    n = len(speakers)
    result: dict[str, Any] = {}
    for name in CROPS:
        scores, same, groups = [], [], []
        for i, j in itertools.combinations(range(n), 2):
            scores.append(float(test[name][i] @ enrol[name][j]))
            same.append(speakers[i] == speakers[j])
            groups.append("|".join(sorted({speakers[i], speakers[j]})))
        entry = {"crop_vs_crop": pair_eer(scores, same, groups)}
        if name != "full":
            scores, same, groups = [], [], []
            for i, j in itertools.permutations(range(n), 2):
                scores.append(float(test[name][i] @ enrol["full"][j]))
                same.append(speakers[i] == speakers[j])
                groups.append("|".join(sorted({speakers[i], speakers[j]})))
            entry["crop_vs_other_full_utterances"] = pair_eer(scores, same, groups)
        result[name] = entry
    return result


def interval_coverage(encoder: SpeakerEncoder, wavs: list[np.ndarray],
                      speakers: list[str]) -> dict[str, Any]:
    """Does the interval after k windows contain the similarity after all windows?"""
    utts = [encoder.embed_utterance(w) for w in wavs]
    hits: dict[int, list[bool]] = {1: [], 2: [], 3: [], 5: []}
    widths: dict[int, list[float]] = {k: [] for k in hits}
    for i, utt in enumerate(utts):
        others = [u for j, u in enumerate(utts) if j != i and speakers[j] == speakers[i]]
        reference = embed_speaker(others)
        truth = float(utt.embedding @ reference)
        for k in hits:
            if len(utt.partials) < 2 * k:
                continue
            live = RunningVoiceprint(window_hop_s=1.232)
            live.add_many(utt.partials[:k])
            sim = live.similarity(reference)
            hits[k].append(sim.low <= truth <= sim.high)
            widths[k].append(sim.high - sim.low)
    return {f"{k}_windows": {"coverage": round(float(np.mean(hits[k])), 3), "n": len(hits[k]),
                             "mean_width": round(float(np.mean(widths[k])), 3)}
            for k in hits if hits[k]}


def consistency_check(encoder: SpeakerEncoder, pcms: list[np.ndarray],
                      speakers: list[str], threshold: float = 0.72) -> dict[str, Any]:
    singles = []
    for pcm in pcms:
        for x in (pcm, phone_channel(pcm)):
            singles.append(_two_group_consistency(encoder.embed_utterance(
                pcm16_to_float(x)).partials))
    rng = np.random.default_rng(0)
    spliced = []
    while len(spliced) < 80:
        a, b = rng.choice(len(pcms), 2, replace=False)
        if speakers[a] == speakers[b]:
            continue
        la, lb = rng.choice([3, 4, 6, 8], 2)
        x = np.concatenate([pcms[a][: la * 16000], pcms[b][: lb * 16000]])
        if len(spliced) % 2:
            x = phone_channel(x)
        spliced.append(_two_group_consistency(encoder.embed_utterance(
            pcm16_to_float(x)).partials))
    s, t = np.array(singles), np.array(spliced)
    return {"threshold": threshold,
            "single_voice": {"n": len(s), "refused": int((s < threshold).sum()),
                             "min": round(float(s.min()), 4)},
            "two_voices_spliced": {"n": len(t), "caught": int((t < threshold).sum()),
                                   "max": round(float(t.max()), 4)}}


def timed(fn: Any, reps: int) -> dict[str, float]:
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(1000 * (time.perf_counter() - w))
        cpu.append(1000 * (time.process_time() - c))
    return {"wall_ms_median": round(float(np.median(wall)), 2),
            "wall_ms_p95": round(float(np.percentile(wall, 95)), 2),
            "cpu_ms_median": round(float(np.median(cpu)), 2), "reps": reps}


def engine_latency(encoder: SpeakerEncoder, one: np.ndarray) -> dict[str, Any]:
    mels = partial_mels(one)
    batch = np.repeat(mels, 8, axis=0)
    per_batch = timed(lambda: encoder.embed_partials(batch), 10)
    return {"network_one_partial": timed(lambda: encoder.embed_partials(mels), 30),
            "network_batch8_per_partial": {k: round(v / 8, 2) if k != "reps" else v
                                           for k, v in per_batch.items()},
            "mel_plus_network_one_partial": timed(lambda: encoder.embed_preprocessed(one), 30)}


def latency(state_path: Path, wav: np.ndarray) -> dict[str, Any]:
    pre = preprocess(wav)
    one = pre[:25600]
    out: dict[str, Any] = {"preprocess_3s": timed(lambda: preprocess(wav[:48000]), 20),
                           "mel_one_partial": timed(lambda: partial_mels(one), 50)}
    for engine in ("onnx", "numpy"):
        out[engine] = engine_latency(SpeakerEncoder.load(state_path, engine=engine), one)
    return out


def main() -> int:
    if not GE2E.exists():
        print(f"shared GE2E reference not found at {GE2E}")
        return 1
    with np.load(GE2E / "ref_embeddings.npz") as z:
        paths, speakers = [str(p) for p in z["paths"]], [str(s) for s in z["speakers"]]
        reference = z["embeddings"]
    encoder = SpeakerEncoder.load()
    pcms = [decode_file(GE2E / "audio" / p).pcm for p in paths]
    wide = [pcm16_to_float(p) for p in pcms]
    narrow = [pcm16_to_float(phone_channel(p)) for p in pcms]

    full = np.stack([encoder.embed_utterance(w).embedding for w in wide])
    parity = {"n": len(full), "max_abs_diff": float(np.abs(full - reference).max()),
              "min_cosine": float(min(cosine(a, b) for a, b in zip(full, reference,
                                                                   strict=True)))}
    print(f"parity: max |diff| {parity['max_abs_diff']:.2e}, min cos {parity['min_cosine']:.7f}")

    emb_wide, emb_narrow = embed_all(encoder, wide), embed_all(encoder, narrow)
    results: dict[str, Any] = {
        "data": "shared/reference/ge2e/audio: LibriSpeech test-other, 10 speakers x 4 "
                "utterances; crops are the first N s of the preprocessed speech",
        "parity_vs_resemblyzer": parity,
        "wideband": verification(emb_wide, emb_wide, speakers),
        "mulaw8k": verification(emb_narrow, emb_narrow, speakers),
        "mulaw8k_test_vs_wideband_enrolment": verification(emb_narrow, emb_wide, speakers),
    }
    for cond in ("wideband", "mulaw8k", "mulaw8k_test_vs_wideband_enrolment"):
        for crop, entry in results[cond].items():
            for kind, r in entry.items():
                print(f"{cond:36s} {crop:5s} {kind:30s} EER {r['eer_pct']:5.2f}% "
                      f"CI [{r['ci95_pct'][0]:.2f}, {r['ci95_pct'][1]:.2f}]")
    results["voiceprint_interval_coverage"] = interval_coverage(encoder, wide, speakers)
    print("interval coverage:", results["voiceprint_interval_coverage"])
    results["enrolment_consistency"] = consistency_check(encoder, pcms, speakers)
    print("enrolment consistency:", results["enrolment_consistency"])
    longest = int(np.argmax([len(w) for w in wide]))
    results["latency"] = latency(default_checkpoint(), wide[longest])
    results["latency"]["machine"] = {
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "threads": "ONNX Runtime intra_op=1; OPENBLAS_NUM_THREADS="
                   + os.environ.get("OPENBLAS_NUM_THREADS", ""),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "shared 2-core VM; other jobs were running, so expect noise"}
    print("latency:", json.dumps(results["latency"], indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "speaker.json").write_text(json.dumps(results, indent=1))
    print("wrote bench/results/speaker.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
