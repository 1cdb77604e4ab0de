"""Campaign detection on a simulated day of calls (precision, recall, time to first alert).

A business day (8 h) of ~500 calls to one tenant, built from the shared
corpus (shared/data/speech and shared/reference/ge2e/audio):

- ``piper-am`` / ``piper-pm``: 25 and 10 calls within 15 and 6 minutes, one
  synthetic voice (Piper en_US-joe), two *different* sentences per call and no
  sentence twice within a campaign: only the voice is shared (same_voice);
- ``espeak-script``: 20 calls within 12 minutes that all play one recorded
  eSpeak message, then continue with other eSpeak sentences in other eSpeak
  voices: only the recording is shared (same_script);
- ``replayed-person``: 12 calls within 8 minutes replaying one recording of a
  real person (a LibriSpeech clip kept out of the genuine traffic): shared
  voice *and* audio;
- genuine callers: the 10 LibriSpeech speakers, two of their utterances per
  call, at random times (~430); no speaker calls more than 3 times in 10 minutes,
  and 7 "repeat caller" episodes have one speaker call 3 times within 6
  minutes (below ``min_calls``). The corpus has only 10 real voices, so
  genuine clips are reused over the day; a clip is never reused within 20
  minutes, because the same audio twice *is* a replay and would rightly match.

Every call goes through its own channel: gain −12…+6 dB, white noise at
15–30 dB SNR, 0–0.5 s leading silence, 8 kHz G.711 μ-law. Each call's
summary (running voiceprint from the GE2E encoder over the call's 1.6 s
partials, fingerprint of the 8 kHz audio) reaches the detector when the call
ends; the default :class:`~streamguard.campaign.CampaignPolicy` (5 calls in
10 minutes) applies.

Reported: call-level precision / recall (calls listed in a same_voice or
same_script alert vs calls that belong to a campaign), campaign-level
detection and false campaigns, time from a campaign's first call to its
first alert (seconds and calls), replay alerts, processing cost per call.
Run from the repository root: ``nice -n 10 python -m bench.campaign``;
writes bench/results/campaign.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import csv
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamguard.campaign import CallSummary, CampaignAlert, CampaignDetector, CampaignPolicy
from streamguard.fingerprint import Fingerprinter
from streamguard.media import (
    StreamResampler,
    decode_file,
    pcm16_to_float,
    ulaw_decode,
    ulaw_encode,
)
from streamguard.speaker import RunningVoiceprint, SpeakerEncoder, partial_mels, preprocess

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
GE2E_AUDIO = REPO.parent / "shared" / "reference" / "ge2e" / "audio" / "librispeech_test-other"
OUT = REPO / "bench" / "results" / "campaign.json"
DAY_S = 8 * 3600.0
SCRIPT_CLIP = "spoof_espeak/espeak_000.flac"


@dataclass
class PlannedCall:
    call_id: str
    start: float
    clips: list[Path]
    campaign: str | None  # ground truth


def corpus() -> tuple[list[Path], list[Path], dict[str, list[Path]]]:
    with (SPEECH / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    piper = [SPEECH / r["path"] for r in rows if r["source"].startswith("piper")]
    espeak = [SPEECH / r["path"] for r in rows if r["source"] == "espeak-ng"]
    genuine: dict[str, dict[str, Path]] = defaultdict(dict)
    for r in rows:
        if r["label"] == "bonafide":
            genuine[r["speaker"]][Path(r["path"]).name] = SPEECH / r["path"]
    for path in sorted(GE2E_AUDIO.glob("*/*.flac")):
        genuine[path.parent.name].setdefault(path.name, path)
    return piper, espeak, {k: sorted(v.values()) for k, v in sorted(genuine.items())}


def plan(rng: np.random.Generator) -> tuple[list[PlannedCall], dict[str, float]]:
    piper, espeak, genuine = corpus()
    # The replayed person's recording leaves the genuine pool.
    replay_speaker = sorted(genuine)[3]
    replayed = genuine[replay_speaker].pop()
    calls: list[PlannedCall] = []

    def campaign(name: str, n: int, start: float, span: float,
                 clips_for: list[list[Path]]) -> None:
        times = np.sort(rng.uniform(start, start + span, n))
        times[0] = start
        for i, (t, clips) in enumerate(zip(times, clips_for, strict=True)):
            calls.append(PlannedCall(f"{name}-{i:02d}", float(t), clips, name))

    order = list(rng.permutation(len(piper)))
    campaign("piper-am", 25, 3600.0, 900.0,
             [[piper[order[2 * i]], piper[order[2 * i + 1]]] for i in range(25)])
    order = list(rng.permutation(len(piper)))
    campaign("piper-pm", 10, 23400.0, 360.0,
             [[piper[order[2 * i]], piper[order[2 * i + 1]]] for i in range(10)])
    script = SPEECH / SCRIPT_CLIP
    rest = [p for p in espeak if p != script]
    campaign("espeak-script", 20, 10800.0, 720.0,
             [[script, rest[int(j)]] for j in rng.choice(len(rest), 20, replace=False)])
    campaign("replayed-person", 12, 16200.0, 480.0, [[replayed] for _ in range(12)])
    campaign_starts = {c.campaign: c.start for c in calls
                       if c.campaign and c.call_id.endswith("-00")}

    # Genuine traffic: 430 random calls + 7 episodes of 3 calls by one person.
    speakers = sorted(genuine)
    slots: list[tuple[float, str | None]] = [(float(t), None) for t in rng.uniform(0, DAY_S, 430)]
    for t0 in rng.uniform(0, DAY_S - 400, 7):
        who = speakers[int(rng.integers(len(speakers)))]
        slots += [(float(t0) + dt, who) for dt in (0.0, 150.0, 330.0)]
    slots.sort()
    history: list[tuple[float, str, list[Path]]] = []
    for k, (t, fixed) in enumerate(slots):
        recent = [h for h in history if h[0] > t - 1200.0]
        busy = Counter(h[1] for h in recent if h[0] > t - 600.0)
        used = {p for h in recent for p in h[2]}
        # Random calls keep clear of repeat-caller episodes, so that no genuine speaker
        # exceeds 3 calls in 10 minutes (5 would rightly be "the same voice").
        near_episode = {who for (te, who) in slots if who and abs(te - t) < 600.0}
        who = fixed or next((s for s in rng.permutation(speakers)
                             if busy[s] < 2 and s not in near_episode), None)
        if who is None:
            continue  # a burst: every speaker already called twice in 10 minutes
        free = [p for p in genuine[who] if p not in used]
        pick = [free[int(j)] for j in rng.choice(len(free), min(2, len(free)), replace=False)]
        if not pick:
            continue  # every clip of this speaker was heard in the last 20 minutes
        history.append((t, who, pick))
        calls.append(PlannedCall(f"genuine-{k:03d}-{who}", t, pick, None))
    calls.sort(key=lambda c: c.start)
    return calls, campaign_starts


def channel(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gain, leading silence, white noise, 16 → 8 kHz, G.711 μ-law; returns 8 kHz PCM16."""
    x = pcm.astype(np.float64) * 10 ** (rng.uniform(-12, 6) / 20)
    x = np.concatenate([np.zeros(int(rng.uniform(0, 0.5) * 16000)), x])
    power = np.mean(x ** 2)
    x = x + rng.normal(0, np.sqrt(power / 10 ** (rng.uniform(15, 30) / 10)), len(x))
    down = StreamResampler(16000, 8000)
    pcm16 = np.clip(x, -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(np.concatenate([down.push(pcm16), down.flush()])))


def main() -> int:
    rng = np.random.default_rng(7)
    calls, campaign_starts = plan(rng)
    truth = {c.call_id: c.campaign for c in calls}
    encoder = SpeakerEncoder.load()
    fingerprinter = Fingerprinter()
    cache: dict[Path, np.ndarray] = {}
    summaries: list[CallSummary] = []
    cost = {"fingerprint": 0.0, "voiceprint": 0.0, "observe": 0.0}
    audio_s = 0.0
    for c in calls:
        pcm = np.concatenate([cache.setdefault(p, decode_file(p).pcm) for p in c.clips])
        audio = channel(pcm, rng)
        audio_s += len(audio) / 8000
        t0 = time.perf_counter()
        fp = fingerprinter.fingerprint(audio, 8000)
        t1 = time.perf_counter()
        up = StreamResampler(8000, 16000)
        wide = pcm16_to_float(np.concatenate([up.push(audio), up.flush()]))
        running = RunningVoiceprint()
        running.add_many(encoder.embed_partials(partial_mels(preprocess(wide))))
        cost["fingerprint"] += t1 - t0
        cost["voiceprint"] += time.perf_counter() - t1
        summaries.append(CallSummary(c.call_id, "bank", c.start + len(audio) / 8000,
                                     running.embedding(), fp, running.speech_seconds))
    summaries.sort(key=lambda s: s.timestamp)
    detector = CampaignDetector(default=CampaignPolicy())
    alerts: list[tuple[float, CampaignAlert]] = []
    t0 = time.perf_counter()
    for s in summaries:
        alerts += [(s.timestamp, a) for a in detector.observe(s)]
    cost["observe"] = time.perf_counter() - t0

    campaign_alerts = [(t, a) for t, a in alerts if a.kind != "replay"]
    flagged = {cid for _, a in campaign_alerts for cid in a.calls}
    positives = {cid for cid, camp in truth.items() if camp}
    tp = len(flagged & positives)
    by_id: dict[str, list[tuple[float, CampaignAlert]]] = defaultdict(list)
    for t, a in campaign_alerts:
        by_id[a.campaign_id].append((t, a))
    found: dict[str, dict[str, object]] = {}
    false_campaigns = []
    for cid, items in by_id.items():
        members = items[-1][1].calls
        majority, n = Counter(truth[m] for m in members).most_common(1)[0]
        kind = items[0][1].kind
        if majority is None:
            false_campaigns.append({"campaign_id": cid, "kind": kind, "calls": list(members)})
            continue
        first_t = items[0][0]
        start = campaign_starts[majority]
        seen = sum(1 for c in calls if c.campaign == majority and c.start <= first_t)
        entry = found.setdefault(majority, {"alerts": []})
        entry["alerts"].append({  # type: ignore[union-attr]
            "campaign_id": cid, "kind": kind, "calls": len(members),
            "of_this_campaign": n, "first_alert_after_s": round(first_t - start, 1),
            "campaign_calls_started_by_then": seen})
    per_campaign = {}
    for name in campaign_starts:
        total = sum(1 for c in calls if c.campaign == name)
        got = found.get(name, {"alerts": []})["alerts"]
        listed = sum(1 for cid in flagged if truth[cid] == name)
        per_campaign[name] = {
            "calls": total, "calls_listed": listed, "alerts": got,
            "time_to_first_alert_s": min((a["first_alert_after_s"] for a in got), default=None),
            "calls_before_first_alert": min(
                (a["campaign_calls_started_by_then"] for a in got), default=None)}
    replays = [a for _, a in alerts if a.kind == "replay"]
    replay_ok = sum(1 for a in replays if truth[a.calls[0]] is not None
                    and truth[a.calls[0]] == truth[a.calls[1]])
    n_genuine = len(calls) - len(positives)
    result = {
        "calls": len(calls), "campaign_calls": len(positives), "genuine_calls": n_genuine,
        "policy": {"min_calls": 5, "window_s": 600,
                   "voice_threshold": CampaignPolicy().voice_threshold,
                   "script_min_matches": CampaignPolicy().script_min_matches},
        "call_level": {
            "precision": round(tp / len(flagged), 4) if flagged else None,
            "recall": round(tp / len(positives), 4),
            "true_positive_calls": tp, "false_positive_calls": len(flagged - positives),
            "missed_calls": sorted(positives - flagged)},
        "campaigns_detected": f"{sum(1 for v in per_campaign.values() if v['alerts'])}"
                              f"/{len(per_campaign)}",
        "false_campaigns": false_campaigns,
        "per_campaign": per_campaign,
        "replay_alerts": {"n": len(replays), "both_calls_in_one_campaign": replay_ok},
        "alerts_by_kind": dict(Counter(a.kind for _, a in alerts)),
        "cost_ms_per_call": {k: round(v / len(calls) * 1e3, 2) for k, v in cost.items()},
        "audio_seconds": round(audio_s, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_campaign"}, indent=1))
    for name, v in per_campaign.items():
        print(name, {k: v[k] for k in ("calls", "calls_listed", "time_to_first_alert_s",
                                       "calls_before_first_alert")},
              [(a["kind"], a["calls"]) for a in v["alerts"]])
    print("wrote", OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
