"""Failure-mode probe: what the shipped detector does with audio a real call carries.

Every condition is played as one or more *calls* through the live session
path (``Guard`` + ``Session``): 20 ms chunks with media timestamps, G.711
μ-law payloads at 8 kHz where a phone line would carry them, so resampling,
the speech gate (WebRTC VAD, level floor, DTMF), windowing, batching,
calibration and fusion all run as in production. The feeder waits while a
window is being scored (as the file scanner does), so no window is dropped
for load.

Per condition it reports the windows the windower cut, the fraction of them
the speech gate let through to the model, the mean calibrated per-window
P(synthetic), the fraction of scored windows with P >= 0.5, the worst live
state each call reached and its final state. Conditions with a genuine human
voice are judged as false-alarm rates; non-speech conditions should not be
scored at all, and if scored must not alarm; the synthetic controls show the
same path does fire on synthetic speech.

Sources (nothing is committed; see models/DATA_SOURCES.md):
- genuine speech: the held-out *test-split* speakers only (shared corpus
  LibriSpeech 1998 and 2033; Asterisk fr June, Debian
  asterisk-core-sounds-fr-g722), so nothing was seen in training;
- babble / TV: LibriSpeech speakers of the shared corpus' training split,
  and music-on-hold mixed under the genuine speaker;
- music on hold: gateway/prompts/hold_music.wav and the five tracks of
  Debian asterisk-moh-opsound-g722 (CC BY-SA 3.0);
- laughter and other non-lexical vocalisations: the voice packs of Debian
  hedgewars-data (GFDL-1.3, acted game voices);
- DTMF: synthesised from the ITU-T Q.23 frequency pairs;
- silence and comfort noise: synthesised.

Debian packages that are not in ``.data/cache/src`` are fetched with
``apt-get download`` (``--no-fetch`` skips them and the conditions that need
them). Run from the repository root::

    nice -n 10 .venv/bin/python -m bench.failure_modes [--model X.onnx --out X.json] [--gate]

Writes bench/results/failure_modes.json and prints a table. The same run is
the release gate for a new model (:data:`GATE`): ``--gate`` exits with status
3 when a candidate fails it, and tests/test_failure_modes.py checks that the
committed results belong to the shipped model and pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy import signal

from streamguard import AudioChunk, Guard, GuardConfig, State, Verdict
from streamguard.config import bundled_model_path
from streamguard.media import decode_file, ulaw_encode

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
SPLITS = REPO / "models" / "splits.json"
CACHE = REPO / ".data" / "cache"
HOLD_PROMPT = REPO / "gateway" / "prompts" / "hold_music.wav"
OUT = REPO / "bench" / "results" / "failure_modes.json"

DEBS = {
    "asterisk-moh-opsound-g722": "usr/share/asterisk/moh",
    "asterisk-core-sounds-fr-g722": "usr/share/asterisk/sounds/fr_CA_f_June",
    "hedgewars-data": "usr/share/games/hedgewars/Data/Sounds/voices",
}
# Hedgewars voice packs recorded by people (Robot is a processed effect voice).
HEDGEWARS_VOICES = ("British", "Classic", "Default", "Default_es", "Default_pl", "Default_ru",
                    "Default_uk", "HillBilly", "Mobster", "Pirate", "Russian", "Singer", "Surfer")
NON_LEXICAL = ("Laugh", "Ooff1", "Ooff2", "Ooff3", "Ow1", "Ow2", "Ow3", "Ow4", "Hmm",
               "PoisonCough")
# ITU-T Q.23: low (row) and high (column) group frequencies in Hz.
DTMF_ROWS = (697, 770, 852, 941)
DTMF_COLS = (1209, 1336, 1477, 1633)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
STATE_RANK = {State.LISTENING: 0, State.CLEAR: 1, State.SUSPECT: 2, State.SYNTHETIC: 3,
              State.DISCLOSED_SYNTHETIC: 3}
SR = 16000
SHORT = {"8 kHz μ-law": "μ-law 8 kHz", "wideband 16 kHz": "wideband"}
sys.path.insert(0, str(REPO / "models"))
import synth_corpus  # noqa: E402

# Release gate: what a candidate model must meet here before it may ship. The
# clean test split cannot see these failures (two all-families candidates had
# a lower test EER and flagged one noisy caller in two); the limits are the
# shipped vc-cnn-1.0.0's worst conditions rounded up, so a new model may be
# better but not worse on any of them.
GATE = {
    # per genuine-voice or non-speech condition: windows scored P >= 0.5
    "max_false_window_rate": 0.06,
    # per condition: calls whose live state reached suspect or synthetic
    "max_false_alarm_calls_per_condition": 1,
    # over every genuine-voice call of the bench
    "max_genuine_call_alarm_rate": 0.05,
    # synthetic controls: windows scored P >= 0.5, and each call must end synthetic
    "min_synthetic_window_rate": 0.9,
}


# ------------------------------------------------------------------ sources


def ensure_deb(pkg: str, fetch: bool) -> Path | None:
    """Folder of the package's audio under .data/cache/src, fetching it if allowed
    (the corpus generator's fetcher, same cache)."""
    target = synth_corpus.ensure_deb(pkg, CACHE, fetch)
    if target is None:
        print(f"warning: Debian package {pkg} not available (apt-get download {pkg}); "
              "conditions that need it are skipped", file=sys.stderr)
        return None
    folder = target / DEBS[pkg]
    return folder if folder.exists() else None


def load16(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz in [-1, 1] (PyAV decode, G.722 included)."""
    if path.suffix == ".g722":
        with av.open(str(path), format="g722") as c:
            frames = [f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]
            rate = c.streams.audio[0].codec_context.sample_rate
        x = np.concatenate(frames).astype(np.float32) / 32768.0 if frames else np.zeros(0)
        if rate != SR:
            x = signal.resample_poly(x, SR, rate)
        return x.astype(np.float32)
    return decode_file(path).pcm.astype(np.float32) / 32768.0


def active_rms(x: np.ndarray) -> float:
    """RMS over the louder half of 20 ms frames (a crude active-speech level)."""
    n = len(x) // 320
    if n == 0:
        return float(np.sqrt(np.mean(x ** 2) + 1e-12))
    e = np.mean(x[: n * 320].reshape(n, 320) ** 2, axis=1)
    return float(np.sqrt(np.mean(e[e >= np.median(e)]) + 1e-12))


def set_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return (x * (10 ** (dbfs / 20) / active_rms(x))).astype(np.float32)


def concat(parts: list[np.ndarray], rng: np.random.Generator, seconds: float,
           pause: tuple[float, float] = (0.3, 0.8)) -> np.ndarray:
    """Clips one after another with short pauses (looped) up to ``seconds``."""
    out, total, i = [], 0, 0
    while total < seconds * SR and parts:
        clip = parts[i % len(parts)]
        gap = np.zeros(int(rng.uniform(*pause) * SR), np.float32)
        out += [clip, gap]
        total += len(clip) + len(gap)
        i += 1
    return np.concatenate(out)[: int(seconds * SR)] if out else np.zeros(0, np.float32)


def floor_noise(n: int, rng: np.random.Generator, dbfs: float = -70.0) -> np.ndarray:
    return (rng.standard_normal(n) * 10 ** (dbfs / 20)).astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    y = np.fft.irfft(spec, n)
    return (y / (np.std(y) + 1e-12)).astype(np.float32)


def dtmf(keys: str, rng: np.random.Generator, tone: tuple[float, float] = (0.07, 0.2),
         gap: tuple[float, float] = (0.06, 0.4), lead: float = 0.5) -> np.ndarray:
    """Key presses per ITU-T Q.23 (row + column sine), high group +2 dB (twist)."""
    parts = [np.zeros(int(lead * SR), np.float32)]
    for key in keys:
        r = next(i for i, row in enumerate(DTMF_KEYS) if key in row)
        c = DTMF_KEYS[r].index(key)
        t = np.arange(int(rng.uniform(*tone) * SR)) / SR
        low, high = 10 ** (-10 / 20), 10 ** (-8 / 20)  # about -10 / -8 dBFS per tone
        s = low * np.sin(2 * np.pi * DTMF_ROWS[r] * t) + high * np.sin(2 * np.pi * DTMF_COLS[c] * t)
        ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.003)  # 3 ms on/off ramps
        parts += [(0.5 * s * ramp).astype(np.float32),
                  np.zeros(int(rng.uniform(*gap) * SR), np.float32)]
    return np.concatenate(parts)


def to8k(x: np.ndarray) -> np.ndarray:
    return signal.resample_poly(x, 1, 2).astype(np.float32)


def pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def codec8k(x8: np.ndarray, codec: str, bitrate: int) -> np.ndarray:
    """8 kHz narrowband codec round trip with PyAV: 'libopus' or 'libopencore_amrnb'."""
    enc = av.CodecContext.create(codec, "w")
    enc.sample_rate, enc.layout, enc.format = 8000, "mono", "s16"
    enc.bit_rate = bitrate
    enc.time_base = Fraction(1, 8000)
    if codec == "libopus":
        enc.options = {"application": "voip"}
    frame = av.AudioFrame.from_ndarray(pcm16(x8).reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 8000, 0
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    dec = av.CodecContext.create("libopus" if codec == "libopus" else "amrnb", "r")
    dec.sample_rate, dec.layout = 8000, "mono"
    parts = []
    for p in packets:
        for f in dec.decode(p):
            a = f.to_ndarray().reshape(-1)
            parts.append(a.astype(np.float32) / 32768.0 if a.dtype == np.int16
                         else a.astype(np.float32))
            rate = f.sample_rate
    y = np.concatenate(parts)
    if rate != 8000:
        y = signal.resample_poly(y, 8000, rate).astype(np.float32)
    return y[: len(x8)]


# ------------------------------------------------------------------ calls


@dataclass
class Call:
    name: str
    audio: np.ndarray  # float32 at ``rate``
    rate: int = 16000
    ulaw: bool = False  # carried as G.711 μ-law payloads (8 kHz)


@dataclass
class Condition:
    name: str
    kind: str  # "non-speech", "genuine" or "synthetic"
    channel: str
    what: str
    calls: list[Call] = field(default_factory=list)


def phone(name: str, x16: np.ndarray) -> Call:
    return Call(name, to8k(x16), 8000, ulaw=True)


def build_conditions(fetch: bool, seconds: float, seed: int) -> tuple[list[Condition], dict]:
    rng = np.random.default_rng(seed)
    notes: dict = {"skipped": {}}
    conds: list[Condition] = []
    split = json.loads(SPLITS.read_text())["shared"]

    # --- genuine speakers of the test split (never seen in training)
    speakers: dict[str, list[np.ndarray]] = {}
    synthetic: dict[str, list[np.ndarray]] = {}
    babble_pool: list[np.ndarray] = []
    for path, part in sorted(split.items()):
        x = load16(SPEECH / path)
        if path.startswith("bonafide/"):
            if part == "test":
                speakers.setdefault("librispeech-" + Path(path).name.split("-")[0], []).append(x)
            elif part == "train":
                babble_pool.append(x)
        elif part == "test":
            synthetic.setdefault(path.split("/")[0].removeprefix("spoof_"), []).append(x)
    june = ensure_deb("asterisk-core-sounds-fr-g722", fetch)
    if june is not None:
        clips = [load16(p) for p in sorted(june.glob("*.g722"))]
        clips = [c for c in clips if len(c) > 1.5 * SR]
        order = rng.permutation(len(clips))
        speakers["june-1"] = [clips[i] for i in order[:40]]
        speakers["june-2"] = [clips[i] for i in order[40:80]]
    else:
        notes["skipped"]["june"] = "asterisk-core-sounds-fr-g722 unavailable"
    genuine = {k: set_level(concat(v, rng, seconds), -24.0) for k, v in sorted(speakers.items())}
    for k in genuine:
        genuine[k] = genuine[k] + floor_noise(len(genuine[k]), rng)

    def gen_condition(name: str, channel: str, what: str, fn) -> None:
        cond = Condition(name, "genuine", channel, what)
        for k, x in genuine.items():
            cond.calls.append(fn(k, x))
        conds.append(cond)

    gen_condition("genuine clean", "wideband 16 kHz", "test-split speakers, -24 dBFS",
                  lambda k, x: Call(k, x))
    gen_condition("genuine phone", "8 kHz μ-law", "same calls over G.711 μ-law",
                  lambda k, x: phone(k, x))
    gen_condition("genuine Opus NB", "8 kHz Opus 12 kbit/s", "Opus narrowband (VoIP leg)",
                  lambda k, x: Call(k, codec8k(to8k(x), "libopus", 12000), 8000))
    gen_condition("genuine AMR-NB 12.2", "8 kHz AMR-NB 12.2 kbit/s", "mobile leg",
                  lambda k, x: Call(k, codec8k(to8k(x), "libopencore_amrnb", 12200), 8000))
    gen_condition("genuine AMR-NB 4.75", "8 kHz AMR-NB 4.75 kbit/s", "mobile leg, worst mode",
                  lambda k, x: Call(k, codec8k(to8k(x), "libopencore_amrnb", 4750), 8000))

    def babble(n: int) -> np.ndarray:
        mix = np.zeros(n, np.float32)
        for _ in range(4):  # four overlapping background talkers
            picks = [babble_pool[i] for i in rng.permutation(len(babble_pool))[:12]]
            talker = concat(picks, rng, n / SR + 1, pause=(0.05, 0.3))
            start = int(rng.integers(0, SR))
            mix += set_level(talker[start:start + n], -30.0)
        return mix

    for snr in (10, 5, 0):
        gen_condition(f"genuine + babble {snr} dB", "8 kHz μ-law",
                      f"4 background talkers (training-split LibriSpeech) at {snr} dB SNR",
                      lambda k, x, snr=snr: phone(k, x + set_level(babble(len(x)), -24.0 - snr)))

    moh = ensure_deb("asterisk-moh-opsound-g722", fetch)
    tracks: list[np.ndarray] = []
    if moh is not None:
        for p in sorted(moh.glob("*.g722")):
            t = load16(p)
            start = int(min(20 * SR, max(0, len(t) - seconds * SR)))
            tracks.append(t[start:start + int(seconds * SR)])
        def tv(k: str, x: np.ndarray, snr: float) -> Call:
            track = tracks[sorted(genuine).index(k) % len(tracks)]
            bed = np.zeros(len(x), np.float32)
            bed[: min(len(x), len(track))] = track[: len(x)]
            bed = set_level(bed, -30.0) + 0.5 * babble(len(x))
            return phone(k, x + set_level(bed, -24.0 - snr))

        for snr in (10, 0):
            gen_condition(f"genuine + TV/music {snr} dB", "8 kHz μ-law",
                          f"music-on-hold track + 4 talkers at -6 dB under the speaker, "
                          f"{snr} dB SNR", lambda k, x, snr=snr: tv(k, x, snr))
    else:
        notes["skipped"]["music"] = "asterisk-moh-opsound-g722 unavailable"
    gen_condition("genuine loud", "8 kHz μ-law", "peak normalised to -0.5 dBFS",
                  lambda k, x: phone(k, (x * 10 ** (-0.5 / 20) / np.abs(x).max())))
    gen_condition("genuine clipped", "8 kHz μ-law",
                  "+20 dB gain (-4 dBFS active RMS), hard-clipped at full scale (~6 % of samples)",
                  lambda k, x: phone(k, np.clip(x * 10.0, -1.0, 1.0)))

    # --- laughter and other non-lexical vocalisations (human, acted)
    hw = ensure_deb("hedgewars-data", fetch)
    if hw is not None:
        cond = Condition("laughter / non-lexical", "genuine", "8 kHz μ-law",
                         "hedgewars voice packs: Laugh, Ooff, Ow, Hmm, cough, 0.2-0.8 s apart")
        for voice in HEDGEWARS_VOICES:
            clips = [load16(hw / voice / f"{c}.ogg") for c in NON_LEXICAL
                     if (hw / voice / f"{c}.ogg").exists()]
            if clips:
                x = set_level(concat(clips, rng, min(seconds, 15.0), pause=(0.2, 0.8)), -24.0)
                cond.calls.append(phone(f"hedgewars-{voice}", x + floor_noise(len(x), rng)))
        conds.append(cond)
        laughs = [load16(hw / v / "Laugh.ogg") for v in HEDGEWARS_VOICES
                  if (hw / v / "Laugh.ogg").exists()]
        cond = Condition("laughter only", "genuine", "8 kHz μ-law",
                         "hedgewars Laugh.ogg of all voice packs, back to back")
        x = set_level(concat(laughs, rng, seconds, pause=(0.1, 0.4)), -24.0)
        cond.calls.append(phone("hedgewars-laughs", x + floor_noise(len(x), rng)))
        conds.append(cond)
    else:
        notes["skipped"]["laughter"] = "hedgewars-data unavailable"

    # --- non-speech
    hold = load16(HOLD_PROMPT)
    cond = Condition("hold chime (gateway prompt)", "non-speech", "8 kHz μ-law",
                     "gateway/prompts/hold_music.wav looped")
    cond.calls.append(phone("hold_music.wav", np.tile(hold, int(seconds * SR / len(hold)) + 1)[
        : int(seconds * SR)]))
    conds.append(cond)
    if tracks:
        for channel, make in (("8 kHz μ-law", phone), ("wideband 16 kHz", Call)):
            cond = Condition(f"music on hold ({SHORT[channel]})",
                             "non-speech", channel,
                             "asterisk-moh-opsound tracks (CC BY-SA 3.0), -20 dBFS")
            for p, t in zip(sorted(moh.glob("*.g722")), tracks, strict=True):
                cond.calls.append(make(p.stem, set_level(t, -20.0)))
            conds.append(cond)
    cond = Condition("DTMF", "non-speech", "8 kHz μ-law", "ITU-T Q.23 key sequences")
    cond.calls += [
        phone("card-number", dtmf("4929123456781234#", rng)),
        phone("slow-menu", dtmf("1*2#30", rng, tone=(0.15, 0.4), gap=(0.8, 2.5))),
        phone("long-presses", dtmf("5500##", rng, tone=(0.8, 1.5), gap=(0.2, 0.6))),
        phone("all-16-keys", dtmf("123A456B789C*0#D" * 2, rng)),
    ]
    conds.append(cond)
    n = int(seconds * SR)
    cond = Condition("silence / comfort noise", "non-speech", "8 kHz μ-law",
                     "digital silence; white -65 dBFS and pink -50 / -40 dBFS comfort noise")
    cond.calls += [
        phone("digital-silence", np.zeros(n, np.float32)),
        phone("white-65", floor_noise(n, rng, -65.0)),
        phone("pink-50", pink(n, rng) * 10 ** (-50 / 20)),
        phone("pink-40", pink(n, rng) * 10 ** (-40 / 20)),
    ]
    conds.append(cond)

    # --- synthetic controls: the test-split spoofs of the shared corpus
    for fam, clips in sorted(synthetic.items()):
        x = set_level(concat(clips, rng, seconds), -24.0)
        x = x + floor_noise(len(x), rng)
        for channel, make in (("wideband 16 kHz", Call), ("8 kHz μ-law", phone)):
            cond = Condition(f"synthetic {fam} ({SHORT[channel]})",
                             "synthetic", channel, f"{len(clips)} test-split {fam} clips "
                             "(shared corpus), control")
            cond.calls.append(make(f"{fam}", x))
            conds.append(cond)
    notes["genuine_calls"] = {k: round(len(v) / SR, 1) for k, v in genuine.items()}
    return conds, notes


async def play(guard: Guard, stream_id: str, call: Call) -> dict:
    """Feed a call in 20 ms chunks through a live session; collect its verdicts."""
    session = guard.open_session(stream_id)
    pcm = pcm16(call.audio)
    step = call.rate // 50
    verdicts: list[Verdict] = []

    async def drain() -> None:
        async for event in session.events():
            if isinstance(event, Verdict) and not event.final:
                verdicts.append(event)

    reader = asyncio.create_task(drain())
    for start in range(0, len(pcm), step):
        frame = pcm[start:start + step]
        chunk = (AudioChunk.from_ulaw(stream_id, ulaw_encode(frame), call.rate, pts=start)
                 if call.ulaw else AudioChunk(stream_id, frame, call.rate, pts=start))
        session.feed_audio(chunk)
        if session.backlog:
            await session.drained()
    final = await session.close()
    await reader
    # Bench-only introspection: windows the VAD gate kept from the model.
    windower = getattr(session, "_windower", None)
    skipped = int(getattr(windower, "skipped", 0))
    await guard.close_session(stream_id)
    probs = [v.window_probability for v in verdicts if v.window_probability is not None]
    worst = max((v.state for v in verdicts), key=STATE_RANK.__getitem__, default=State.LISTENING)
    return {"call": call.name, "seconds": round(len(pcm) / call.rate, 1),
            "windows_cut": len(verdicts) + skipped, "windows_scored": len(verdicts),
            "window_p": [round(p, 3) for p in probs],
            "worst_state": str(worst), "final_state": str(final.state),
            "final_probability": (round(final.probability, 3)
                                  if final.probability is not None else None)}


def summarise(cond: Condition, calls: list[dict]) -> dict:
    cut = sum(c["windows_cut"] for c in calls)
    probs = np.array([p for c in calls for p in c["window_p"]])
    scored = len(probs)
    alarm = {str(State.SUSPECT), str(State.SYNTHETIC)}
    out = {
        "kind": cond.kind, "channel": cond.channel, "what": cond.what, "calls": len(calls),
        "seconds": round(sum(c["seconds"] for c in calls), 1),
        "windows_cut": cut, "windows_scored": scored,
        "fraction_scored": round(scored / cut, 3) if cut else None,
        "mean_p_synthetic": round(float(probs.mean()), 3) if scored else None,
        "fraction_windows_p_ge_0.5": round(float((probs >= 0.5).mean()), 3) if scored else None,
        "final_states": _count(c["final_state"] for c in calls),
        "worst_live_states": _count(c["worst_state"] for c in calls),
        "calls_reaching_suspect_or_synthetic": sum(c["worst_state"] in alarm for c in calls),
        "per_call": [{k: v for k, v in c.items() if k != "window_p"} for c in calls],
    }
    if cond.kind == "synthetic":
        out["reading"] = "control: detection rate (windows >= 0.5) and states should be high"
    elif cond.kind == "genuine":
        out["reading"] = "genuine voice: windows >= 0.5 and alarm states are false alarms"
    else:
        out["reading"] = "no speech: should not be scored; any alarm state is a false alarm"
    return out


def gate(conditions: dict[str, dict]) -> list[str]:
    """Violations of :data:`GATE` by one bench run's conditions (empty: the model passes)."""
    out = []
    alarmed = genuine_calls = 0
    for name, r in conditions.items():
        rate = r["fraction_windows_p_ge_0.5"]
        if r["kind"] == "synthetic":
            if rate is None or rate < GATE["min_synthetic_window_rate"]:
                out.append(f"{name}: {rate} of windows detected "
                           f"(< {GATE['min_synthetic_window_rate']})")
            if set(r["final_states"]) != {str(State.SYNTHETIC)}:
                out.append(f"{name}: final states {r['final_states']}, not all synthetic")
            continue
        if rate is not None and rate > GATE["max_false_window_rate"]:
            out.append(f"{name}: {100 * rate:.1f} % of windows P >= 0.5 "
                       f"(> {100 * GATE['max_false_window_rate']:.0f} %)")
        calls = r["calls_reaching_suspect_or_synthetic"]
        if calls > GATE["max_false_alarm_calls_per_condition"]:
            out.append(f"{name}: {calls} of {r['calls']} calls reached suspect or synthetic")
        if r["kind"] == "genuine":
            alarmed += calls
            genuine_calls += r["calls"]
    if genuine_calls and alarmed / genuine_calls > GATE["max_genuine_call_alarm_rate"]:
        out.append(f"genuine calls: {alarmed} of {genuine_calls} reached suspect or synthetic "
                   f"(> {100 * GATE['max_genuine_call_alarm_rate']:.0f} %)")
    return out


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


async def run(conds: list[Condition], config: GuardConfig) -> tuple[dict, str]:
    """Each condition's summary, and the detector version that judged them."""
    results = {}
    async with Guard.from_config(config) as guard:
        for i, cond in enumerate(conds):
            calls = [await play(guard, f"fm-{i}-{j}", call) for j, call in enumerate(cond.calls)]
            results[cond.name] = summarise(cond, calls)
            print_row(cond.name, results[cond.name])
    return results, guard.detector.version


def print_row(name: str, r: dict) -> None:
    frac = "—" if r["fraction_scored"] is None else f"{100 * r['fraction_scored']:5.1f}%"
    mean = "—" if r["mean_p_synthetic"] is None else f"{r['mean_p_synthetic']:.3f}"
    hi = ("—" if r["fraction_windows_p_ge_0.5"] is None
          else f"{100 * r['fraction_windows_p_ge_0.5']:5.1f}%")
    worst = ", ".join(f"{k} {v}" for k, v in r["worst_live_states"].items())
    print(f"{name:34s} {r['calls']:3d} {r['windows_cut']:5d} {frac:>7s} {mean:>6s} {hi:>7s}  "
          f"worst: {worst}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-fetch", action="store_true", help="do not call apt-get download")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--model", type=Path, default=bundled_model_path(),
                    help="ONNX model with its sidecar JSON (default: the shipped one)")
    ap.add_argument("--no-phase-cue", action="store_true",
                    help="run the model alone, without the phase cue fitted for it")
    ap.add_argument("--gate", action="store_true",
                    help="exit with status 3 when the model fails the release gate")
    args = ap.parse_args(argv)
    if not SPEECH.exists():
        print(f"shared corpus not found at {SPEECH}")
        return 1
    t0 = time.time()
    conds, notes = build_conditions(not args.no_fetch, args.seconds, args.seed)
    t_build = time.time() - t0
    config = GuardConfig(model_path=args.model, phase_cue=not args.no_phase_cue)
    print(f"{'condition':34s} {'n':>3s} {'wins':>5s} {'scored':>7s} {'mean P':>6s} "
          f"{'P>=0.5':>7s}  worst live state per call")
    results, version = asyncio.run(run(conds, config))
    violations = gate(results)
    doc = {
        "model": version,
        "protocol": ("each call fed in 20 ms chunks with timestamps through Guard/Session "
                     "(default GuardConfig: VAD aggressiveness 2, 4.04 s windows every 1 s, "
                     "first after 2 s, >= 35 % speech frames to be scored, fusion + hysteresis "
                     "of the default policy); 'scored' = windows the VAD gate passed to the "
                     "model; P = calibrated per-window P(synthetic); worst live state = highest "
                     "state any verdict of the call carried; phone conditions are G.711 μ-law "
                     "payloads at 8 kHz"),
        "seconds_per_call": args.seconds,
        "seed": args.seed,
        "notes": notes,
        "conditions": results,
        "gate": {"limits": GATE, "passed": not violations, "violations": violations},
        "wall_seconds": {"build": round(t_build, 1), "total": round(time.time() - t0, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out} in {time.time() - t0:.0f} s")
    for v in violations:
        print(f"gate: {v}")
    print(f"release gate: {'passed' if not violations else 'FAILED'}")
    return 3 if args.gate and violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
