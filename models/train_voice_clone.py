"""Train, calibrate, evaluate and export StreamGuard's shipped voice-clone detector.

Run from the repository root (torch is a dev extra):

    nice -n 5 .venv/bin/python models/train_voice_clone.py

Data:
- the shared labelled corpus ``../shared/data/speech`` (labels.csv), always;
- the generated training corpus ``.data/corpus/manifest.csv`` (built by
  models/synth_corpus.py), when ``.data/corpus/READY`` exists.

Splits (written to models/splits.json):
- genuine speech is SPEAKER-disjoint: every speaker (LibriSpeech speakers
  matched across both corpora by their id) goes to one of train / calib /
  test; the 10 LibriSpeech speakers of the shared corpus are split 6 / 2 / 2;
- synthetic speech is SENTENCE-disjoint: all renderings of one text (by any
  engine) share a split; resyntheses of a genuine utterance follow that
  utterance's speaker; items with no text are split by file.

Training: random 64 600-sample crops (tiled when shorter, as AASIST does),
batches balanced 50/50 between classes and, inside each class, across
families, channel augmentation from models/augment.py on the fly, AdamW with a
one-cycle schedule, fixed seeds. Calibration: Platt scaling of the spoof
margin on the calibration split (wideband and phone-channel windows).
Evaluation: the test split, first 64 600 samples of each file (the AASIST
recipe), wideband and after an 8 kHz μ-law round trip.

Outputs: streamguard/models/voice_clone.onnx + .json, models/splits.json.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import augment
from voice_clone_net import (
    INPUT_SAMPLES,
    SAMPLE_RATE,
    SeedEnsemble,
    VoiceCloneNet,
    count_parameters,
)

from bench.metrics import eer as bench_eer

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SPEECH = REPO.parent / "shared" / "data" / "speech"
CORPUS = REPO / ".data" / "corpus"
SPLITS = HERE / "splits.json"
MODEL_DIR = REPO / "streamguard" / "models"
VERSION = "vc-cnn-1.0.0"
ARCH = ("log-linear-spectrogram (512-pt DFT as Conv1d, hop 256, 256 bins to 8 kHz, "
        "per-window level normalisation) + 2-D ResNet CNN 16-24-32-48-64, "
        "time mean/std pooling, linear head")
TIME_BRANCH_ARCH = ("; + time branch (64-tap learnable FIR bank of 32 bands, 1 ms log "
                    "envelopes, 4 Conv1d blocks, mean/std) concatenated before the head")
SHARED_FAMILY = {"spoof_piper": "piper-joe", "spoof_espeak": "espeak-ng",
                 "bonafide": "librispeech"}
SPLIT_NAMES = ("train", "calib", "test")


@dataclass
class Item:
    key: str  # path as recorded in splits.json ("shared/…" or "corpus/…")
    path: Path
    label: int  # 1 = spoof, 0 = bona fide
    family: str
    speaker: str
    text: str
    source: str  # "shared" or "corpus"
    group: str = ""
    split: str = ""
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------- data


def load_audio(path: Path) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        g = math.gcd(sr, SAMPLE_RATE)
        x = signal.resample_poly(x, SAMPLE_RATE // g, sr // g).astype(np.float32)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def norm_text(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def librispeech_id(speaker: str, path: str) -> str | None:
    m = re.search(r"(\d+)-\d+-\d+", Path(path).name)
    if m:
        return m.group(1)
    m = re.fullmatch(r"(?:librispeech[:_-]?)?(\d+)", speaker.strip().lower())
    return m.group(1) if m else None


def shared_items() -> list[Item]:
    items = []
    with (SPEECH / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            folder = row["path"].split("/")[0]
            items.append(Item(
                key=f"shared/{row['path']}", path=SPEECH / row["path"],
                label=int(row["label"] == "spoof"), family=SHARED_FAMILY[folder],
                speaker=row["speaker"], text=row["text"], source="shared"))
    return items


def corpus_items() -> list[Item]:
    items = []
    manifest = CORPUS / "manifest.csv"
    with manifest.open() as fh:
        for row in csv.DictReader(fh):
            path = Path(row["path"])
            if not path.is_absolute():
                path = CORPUS / path
            if path.resolve().is_relative_to(SPEECH.resolve()):
                continue  # the shared corpus itself, loaded from labels.csv
            items.append(Item(
                key=f"corpus/{row['path']}", path=path,
                label=int(row["label"].strip().lower() == "spoof"),
                family=row["family"].strip(), speaker=row.get("speaker", "") or "",
                text=row.get("text", "") or "", source="corpus"))
    return items


def corpus_ready() -> bool:
    return (CORPUS / "READY").exists() and (CORPUS / "manifest.csv").exists()


def _seeded_order(keys: list[str], seed: int) -> list[str]:
    """Deterministic shuffle that does not depend on dict or set order."""
    return sorted(keys, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())


def _cut(keys: list[str], fractions: tuple[float, float, float]) -> dict[str, str]:
    n = len(keys)
    n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
    n_cal = max(1, round(n * fractions[1])) if n >= 3 else 0
    out = {}
    for i, k in enumerate(keys):
        out[k] = "test" if i < n_test else "calib" if i < n_test + n_cal else "train"
    return out


# Genuine sources with a single speaker each: whole speakers go to one split.
# The Asterisk voices give speaker-disjoint genuine IVR speech for calibration
# (carlo) and test (june); Allison stays in training (the bundled demo
# genuine call is made of her held-out prompts). Tiny sources train.
SINGLE_SPEAKER_SPLIT = {"carlo": "calib", "june": "test"}
# Genuine sources that never train: their speakers are shared between the
# calibration and test splits, so both hold more unseen voices than the
# handful of LibriSpeech readers and IVR voices (ktuberling: isolated words,
# 22 volunteers).
EVALUATION_ONLY_GENUINE = ("ktuberling",)


def speaker_key(it: Item) -> str:
    """Global speaker id: LibriSpeech ids match across corpora and resyntheses."""
    lib = librispeech_id(it.speaker, str(it.path))
    if lib and (it.family == "librispeech" or it.label == 1):
        return f"librispeech:{lib}"
    return f"spk:{it.speaker.strip().lower() or it.key}"


def assign_splits(items: list[Item], seed: int = 0) -> None:
    """Speaker-disjoint genuine speech, sentence-disjoint synthetic speech (in place)."""
    # 1. Genuine speakers.
    for it in items:
        if it.label == 0:
            it.group = speaker_key(it)
    speaker_split: dict[str, str] = {}
    libri = sorted({it.group for it in items if it.label == 0
                    and it.group.startswith("librispeech:")})
    for i, g in enumerate(_seeded_order(libri, seed)):  # 10 speakers -> 2 test, 2 calib, 6 train
        speaker_split[g] = "test" if i < 2 else "calib" if i < 4 else "train"
    by_family: dict[str, set[str]] = defaultdict(set)
    for it in items:
        if it.label == 0 and it.group not in speaker_split:
            by_family[it.family].add(it.group)
    for fam in sorted(by_family):
        groups = sorted(by_family[fam])
        if fam in EVALUATION_ONLY_GENUINE:
            speaker_split.update(_cut(_seeded_order(groups, seed), (0.0, 0.5, 0.5)))
        elif len(groups) >= 3:  # e.g. klettres, one speaker per language
            speaker_split.update(_cut(_seeded_order(groups, seed), (0.7, 0.15, 0.15)))
        else:
            for g in groups:
                speaker_split[g] = SINGLE_SPEAKER_SPLIT.get(g.removeprefix("spk:"), "train")
    for it in items:
        if it.label == 0:
            it.split = speaker_split[it.group]
    # 2. Synthetic speech: resyntheses of a genuine speaker follow the speaker;
    #    otherwise all renderings of one sentence share a split.
    text_groups: set[str] = set()
    forced: dict[str, str] = {}  # texts also spoken by a speaker-bound resynthesis
    for it in items:
        if it.label != 1:
            continue
        key = speaker_key(it)
        if key in speaker_split:
            it.group, it.split = key, speaker_split[key]
            if norm_text(it.text):
                forced[f"text:{norm_text(it.text)}"] = it.split
        else:
            t = norm_text(it.text)
            it.group = f"text:{t}" if t else f"file:{it.key}"
            text_groups.add(it.group)
    # Shared-corpus sentences are cut 60/20/20 per family first, so the held-out
    # part of the shared corpus is a fixed, sizeable set; then the rest 70/15/15.
    text_split: dict[str, str] = {}
    for fam in sorted({it.family for it in items if it.source == "shared" and it.label == 1}):
        fam_groups = sorted({it.group for it in items if it.source == "shared"
                             and it.family == fam and it.group in text_groups})
        text_split.update(_cut(_seeded_order(fam_groups, seed), (0.6, 0.2, 0.2)))
    rest = _seeded_order(sorted(text_groups - set(text_split)), seed)
    text_split.update(_cut(rest, (0.7, 0.15, 0.15)))
    text_split.update(forced)
    for it in items:
        if it.label == 1 and not it.split:
            it.split = text_split[it.group]


def write_splits(items: list[Item], seed: int, path: Path = SPLITS) -> dict:
    shared = {it.key.removeprefix("shared/"): it.split for it in items if it.source == "shared"}
    corpus = {it.key.removeprefix("corpus/"): it.split for it in items if it.source == "corpus"}
    summary: dict[str, dict[str, dict[str, int]]] = {}
    for it in items:
        fam = summary.setdefault(it.family, {s: {} for s in SPLIT_NAMES})
        fam[it.split]["files"] = fam[it.split].get("files", 0) + 1
    speakers = defaultdict(set)
    for it in items:
        if it.label == 0:
            speakers[it.split].add(it.group)
    doc = {
        "_doc": ("Split of every file used by models/train_voice_clone.py. 'shared': paths "
                 "relative to ../shared/data/speech; 'corpus': paths relative to "
                 ".data/corpus (manifest.csv). Genuine speech is speaker-disjoint, synthetic "
                 "speech sentence-disjoint."),
        "seed": seed,
        "genuine_speakers": {s: sorted(speakers[s]) for s in SPLIT_NAMES},
        "summary": summary,
        "shared": dict(sorted(shared.items())),
        "corpus": dict(sorted(corpus.items())),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def load_all(items: list[Item]) -> list[Item]:
    kept = []
    for it in items:
        try:
            it.audio = load_audio(it.path)
        except (OSError, RuntimeError, ValueError) as exc:
            log(f"skip unreadable {it.key}: {exc}")
            continue
        if len(it.audio) < SAMPLE_RATE // 2 or float(np.max(np.abs(it.audio))) < 1e-4:
            log(f"skip empty/short {it.key}")
            continue
        kept.append(it)
    return kept


class MissingFamilyError(RuntimeError):
    """A spoof family the recipe trains on has no files (engine or voice missing)."""


def expected_spoof_families(use_corpus: bool) -> list[str]:
    """Every spoof family the generator produces (shared corpus only: its two)."""
    if not use_corpus:
        return sorted(set(SHARED_FAMILY.values()) - {"librispeech"})
    import synth_corpus

    return list(synth_corpus.SPOOF_JOBS)


def family_counts(items: list[Item]) -> dict[tuple[str, str], Counter]:
    out: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for it in items:
        out[("spoof" if it.label else "bonafide", it.family)][it.split or "all"] += 1
    return out


def log_family_counts(items: list[Item]) -> None:
    counts = family_counts(items)
    log(f"{'family':22s} {'label':9s} {'train':>6s} {'calib':>6s} {'test':>6s} {'total':>6s}")
    for (lab, fam), c in sorted(counts.items()):
        log(f"{fam:22s} {lab:9s} {c['train']:6d} {c['calib']:6d} {c['test']:6d} "
            f"{sum(c.values()):6d}")


def check_families(items: list[Item], expected: list[str]) -> None:
    """Refuse to train on less data than the recipe promises: every expected spoof
    family needs files in the training split, and both classes must be present.
    The message names the missing engine/voice and how to install and regenerate."""
    train_counts = Counter(it.family for it in items if it.label == 1 and it.split == "train")
    missing = [f for f in expected if train_counts[f] == 0]
    problems = []
    for fam in missing:
        hint = ""
        try:
            import synth_corpus

            if fam in synth_corpus.ENGINE_CHECKS:
                synth_corpus.ENGINE_CHECKS[fam]()
            hint = (f"engine present; regenerate with: nice -n 10 .venv/bin/python "
                    f"models/synth_corpus.py --families {fam}")
        except Exception as exc:  # MissingEngineError carries the install command
            hint = f"{exc}; then: nice -n 10 .venv/bin/python models/synth_corpus.py " \
                   f"--families {fam}"
        problems.append(f"spoof family {fam!r} has 0 training files ({hint})")
    for label, name in ((0, "bona fide"), (1, "spoof")):
        if not any(it.label == label and it.split == "train" for it in items):
            problems.append(f"no {name} training files at all")
    if problems:
        raise MissingFamilyError("refusing to train on incomplete data:\n  "
                                 + "\n  ".join(problems))


def gather(use_corpus: bool, seed: int) -> list[Item]:
    items = shared_items()
    if use_corpus:
        items += corpus_items()
    assign_splits(items, seed)
    return items


# ----------------------------------------------------------------- training


def first_window(x: np.ndarray) -> np.ndarray:
    """The evaluation window: first 64 600 samples, tiled when shorter (AASIST)."""
    if len(x) >= INPUT_SAMPLES:
        return x[:INPUT_SAMPLES]
    return np.tile(x, INPUT_SAMPLES // len(x) + 1)[:INPUT_SAMPLES]


def random_crop(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(x) < INPUT_SAMPLES:
        x = np.tile(x, INPUT_SAMPLES // len(x) + 2)
        start = int(rng.integers(0, len(x) - INPUT_SAMPLES + 1)) if rng.random() < 0.5 else 0
        return x[start:start + INPUT_SAMPLES]
    start = int(rng.integers(0, len(x) - INPUT_SAMPLES + 1))
    return x[start:start + INPUT_SAMPLES]


class BalancedSampler:
    """Half bona fide, half spoof; inside a class, families drawn ∝ sqrt(family size)."""

    def __init__(self, items: list[Item], rng: np.random.Generator) -> None:
        self.rng = rng
        self.pools: dict[int, list[list[Item]]] = {}
        self.weights: dict[int, np.ndarray] = {}
        for label in (0, 1):
            fams = defaultdict(list)
            for it in items:
                if it.label == label:
                    fams[it.family].append(it)
            names = sorted(fams)
            self.pools[label] = [fams[n] for n in names]
            w = np.array([math.sqrt(len(fams[n])) for n in names])
            self.weights[label] = w / w.sum()

    def draw(self, label: int) -> Item:
        fam = self.pools[label][int(self.rng.choice(len(self.pools[label]),
                                                    p=self.weights[label]))]
        return fam[int(self.rng.integers(len(fam)))]


@dataclass
class TrainConfig:
    steps: int = 1400
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    p_clean: float = 0.2
    p_speed: float = 0.4
    seed: int = 0
    log_every: int = 50
    time_branch: bool = False  # VoiceCloneNet's 1 ms sub-band envelope branch
    paired: float = 0.0  # P(a resynthesised spoof's genuine partner is its own source)
    crowd: float = 0.0  # P(augment.add_crowd instead of the ordinary noise draw)


# Music for augment.SoundBed: a Debian package the failure-mode bench does not use
# (its music-on-hold conditions play asterisk-moh-opsound-g722), so the release gate
# still hears music the model never trained on.
MUSIC_DEB = "lincity-ng-data"
MUSIC_DIR = "usr/share/games/lincity-ng/music/default"
MUSIC_STREAM = 123  # the music bed's generator is seeded with seed + this
# Human non-lexical vocalisations (acted cries, grunts, groans, a laugh) for a second
# bed; the gate's laughter conditions play hedgewars-data, which training never hears.
VOCAL_DEB = "wesnoth-1.16-data"
VOCAL_DIR = "usr/share/games/wesnoth/1.16/data/core/sounds"
VOCAL_PATTERNS = ("human-*.ogg", "dwarf-*.ogg", "dwarf-laugh.wav", "elf-hit-*.ogg",
                  "groan.wav", "ugg.wav")
VOCAL_STREAM = 321  # the vocalisation bed's generator is seeded with seed + this
VOCAL_REELS = 8
VOCAL_REEL_SECONDS = 30.0


class MissingSoundsError(RuntimeError):
    pass


def debian_audio(package: str, pattern: str, purpose: str,
                 cache: Path = REPO / ".data" / "cache") -> tuple[list[np.ndarray], list[str]]:
    """The 16 kHz tracks matching ``pattern`` inside a Debian package (fetched once with
    apt-get download) and their names; MissingSoundsError, naming the fix, without them."""
    import synth_corpus

    src = synth_corpus.ensure_deb(package, cache)
    paths = sorted(src.glob(pattern)) if src is not None else []
    if not paths:
        raise MissingSoundsError(
            f"{purpose} needs the Debian package {package} (apt-get download {package} "
            f"failed or it has no {pattern}); fetch it where apt works, into {cache / 'debs'}")
    tracks = [synth_corpus.to_16k(*synth_corpus.load_audio(p)).astype(np.float32)
              for p in paths]
    return tracks, [p.name for p in paths]


def music_tracks(cache: Path = REPO / ".data" / "cache") -> tuple[list[np.ndarray], list[str]]:
    """The tracks of MUSIC_DEB, the music bed's, and their names."""
    return debian_audio(MUSIC_DEB, f"{MUSIC_DIR}/*.ogg", "--music (or train without it)", cache)


def vocalisation_reels(seed: int, cache: Path = REPO / ".data" / "cache"
                       ) -> tuple[list[np.ndarray], list[str]]:
    """VOCAL_REELS reels of VOCAL_DEB's human vocalisations, back to back in a seeded
    random order at random levels (±6 dB) with 0.1-0.8 s of silence between them, as
    someone laughs or groans on a call; and the clips' names."""
    clips: list[np.ndarray] = []
    names: list[str] = []
    for pattern in VOCAL_PATTERNS:
        found, found_names = debian_audio(VOCAL_DEB, f"{VOCAL_DIR}/{pattern}",
                                          "--vocalisations (or train without it)", cache)
        clips += found
        names += found_names
    rng = np.random.default_rng(seed + VOCAL_STREAM)
    reels = []
    for _ in range(VOCAL_REELS):
        parts: list[np.ndarray] = []
        while sum(len(p) for p in parts) < VOCAL_REEL_SECONDS * SAMPLE_RATE:
            for i in rng.permutation(len(clips)):
                level = np.float32(10 ** (rng.uniform(-6, 6) / 20))
                parts += [clips[i] * level,
                          np.zeros(int(rng.uniform(0.1, 0.8) * SAMPLE_RATE), np.float32)]
        reels.append(np.clip(np.concatenate(parts), -1.0, 1.0))
    return reels, names


def resynthesis_sources(items: list[Item]) -> dict[str, Item]:
    """Spoof key -> the genuine item (same split) it was resynthesised from.

    The vocoder families resynthesise genuine recordings, and their files keep the
    source's name ("world-vc/1688-142285-0000_v0" from "librispeech/1688-142285-0000_c0",
    "world-vc/allison_en_x" from "asterisk/allison_en_x")."""
    def stem(it: Item) -> str:
        return re.sub(r"_[vc]\d+$", "", it.path.stem)

    genuine: dict[tuple[str, str], Item] = {}
    for it in items:
        if it.label == 0:
            genuine.setdefault((stem(it), it.split), it)
    pairs = {}
    for it in items:
        if it.label == 1 and (source := genuine.get((stem(it), it.split))) is not None:
            pairs[it.key] = source
    return pairs


def train(items: list[Item], cfg: TrainConfig, babble: list[np.ndarray],
          music: list[np.ndarray] | None = None,
          vocal: list[np.ndarray] | None = None) -> VoiceCloneNet:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = VoiceCloneNet(time_branch=cfg.time_branch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.15)
    sampler = BalancedSampler(items, rng)
    bed = (augment.SoundBed(music, np.random.default_rng(cfg.seed + MUSIC_STREAM))
           if music else None)
    vocal_bed = (augment.SoundBed(vocal, np.random.default_rng(cfg.seed + VOCAL_STREAM),
                                  p_mix=0.1, p_alone=0.05) if vocal else None)
    sources = resynthesis_sources(items) if cfg.paired > 0 else {}
    model.train()
    t0 = time.time()
    running = []

    def view(audio: np.ndarray, r: np.random.Generator) -> np.ndarray:
        if r.random() < cfg.p_speed:
            audio = augment.speed(audio, r)
        crop = random_crop(audio, r)
        if vocal_bed is not None and (mixed := vocal_bed.mix(crop)) is not None:
            crop = mixed
        return augment.augment(crop, r, babble, p_clean=cfg.p_clean, music=bed,
                               crowd=cfg.crowd)

    def genuine() -> np.ndarray:
        for sound_bed in (bed, vocal_bed):
            if sound_bed is not None and (audio := sound_bed.alone()) is not None:
                return audio
        return sampler.draw(0).audio

    for step in range(1, cfg.steps + 1):
        labels = np.array([i % 2 for i in range(cfg.batch)])
        xs = []
        for _ in range(cfg.batch // 2):
            # Pairing draws the spoof first (its source may be the partner); without it
            # the genuine clip comes first, the order every earlier recipe was trained in.
            spoof = sampler.draw(1) if sources else None
            source = sources.get(spoof.key) if spoof is not None else None
            if source is not None and rng.random() < cfg.paired:
                # the recording it was resynthesised from, cropped and degraded alike
                seed = int(rng.integers(2**32))
                xs.append(view(source.audio, np.random.default_rng(seed)))
                xs.append(view(spoof.audio, np.random.default_rng(seed)))
                continue
            xs.append(view(genuine(), rng))
            xs.append(view((spoof if spoof is not None else sampler.draw(1)).audio, rng))
        xb = torch.from_numpy(np.stack(xs))
        # target index: 0 = spoof, 1 = bona fide (contract)
        yb = torch.from_numpy(1 - labels).long()
        loss = torch.nn.functional.cross_entropy(model(xb), yb, label_smoothing=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            log(f"step {step}/{cfg.steps} loss {np.mean(running):.4f} "
                f"({time.time() - t0:.0f} s)")
            running = []
    model.eval()
    return model


@torch.no_grad()
def margins(model: torch.nn.Module, windows: np.ndarray, batch: int = 32) -> np.ndarray:
    """Spoof margin m = logit0 - logit1 for each window."""
    out = []
    for s in range(0, len(windows), batch):
        logits = model(torch.from_numpy(np.ascontiguousarray(windows[s:s + batch])))
        out.append((logits[:, 0] - logits[:, 1]).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def genuine_reference(net: torch.nn.Module, genuine_cal: list[Item]) -> np.ndarray:
    """A member's margins on the genuine calibration files, wideband and μ-law together
    (at run time the channel is unknown): what its z-scores are taken against."""
    return np.concatenate([margins(net, channel_windows(genuine_cal, ch))
                           for ch in ("wideband", "mulaw8k")])


def seed_ensemble(nets: list[VoiceCloneNet], genuine_cal: list[Item]) -> SeedEnsemble:
    """The members as one model, each margin z-scored by :func:`genuine_reference`."""
    refs = [genuine_reference(net, genuine_cal) for net in nets]
    return SeedEnsemble(nets, [float(r.mean()) for r in refs], [float(r.std()) for r in refs])


def ensemble_margins(members: list[np.ndarray], references: list[np.ndarray]) -> np.ndarray:
    """What SeedEnsemble computes, from margins already scored: each member's as a
    z-score against its ``references`` (:func:`genuine_reference`), averaged."""
    return np.mean([(m - r.mean()) / r.std() for m, r in zip(members, references, strict=True)],
                   axis=0)


# -------------------------------------------------------------- evaluation


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate (spoof = positive, higher score = more synthetic)."""
    return bench_eer(scores, labels)[0]


def balanced_weights(groups: list[str], labels: np.ndarray) -> np.ndarray:
    """Equal total weight per class and, inside a class, per source / family.

    The calibration split holds 90 clips of one Asterisk voice next to 19
    LibriSpeech clips; unweighted, that one voice would set the threshold.
    Weights sum to the number of windows.
    """
    w = np.zeros(len(groups))
    for label in (0, 1):
        members = [i for i in range(len(groups)) if labels[i] == label]
        counts = Counter(groups[i] for i in members)
        for i in members:
            w[i] = 1.0 / (2 * len(counts) * counts[groups[i]])
    return w * len(groups) / w.sum()


def platt(m: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
          iters: int = 100) -> tuple[float, float]:
    """Weighted logistic regression P(spoof) = sigmoid(a*m + b), Platt's smoothed targets.

    Newton's method with step halving: a full Newton step from (1, 0) can
    overshoot into the flat tail of the sigmoid and never come back (seen with
    margins spread over ±8), so a step is only taken when it lowers the loss.
    """
    w = np.ones(len(m)) if w is None else w
    n_pos, n_neg = y.sum(), (1 - y).sum()
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(a: float, b: float) -> float:
        z = a * m + b
        return float(np.sum(w * (np.logaddexp(0.0, z) - t * z)))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iters):
        z = a * m + b
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow
        r = w * (p - t)
        g = np.array([np.sum(r * m), np.sum(r)])
        h = w * p * (1 - p) + 1e-9
        hess = np.array([[np.sum(h * m * m), np.sum(h * m)], [np.sum(h * m), np.sum(h)]])
        hess += 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, g)
        scale = 1.0
        while scale > 1e-6 and loss(a - scale * step[0], b - scale * step[1]) > current:
            scale *= 0.5
        a, b = a - scale * step[0], b - scale * step[1]
        current = loss(a, b)
        if np.abs(scale * step).max() < 1e-10:
            break
    return float(a), float(b)


def channel_windows(items: list[Item], channel: str) -> np.ndarray:
    wins = [first_window(it.audio) for it in items]
    if channel == "mulaw8k":
        wins = [augment.phone_channel(w) for w in wins]
    return np.stack(wins).astype(np.float32) if wins else np.zeros((0, INPUT_SAMPLES), np.float32)


def report(m: np.ndarray, items: list[Item], cal: tuple[float, float]) -> dict:
    """EER overall and per spoof family, FPR/FNR at P(synthetic) = 0.5."""
    y = np.array([it.label for it in items])
    a, b = cal
    p = 1 / (1 + np.exp(-(a * m + b)))
    out: dict = {"n_bonafide": int((y == 0).sum()), "n_spoof": int((y == 1).sum())}
    if (y == 0).any() and (y == 1).any():
        out["eer_pct"] = round(100 * eer(m, y), 2)
    out["fpr_pct_at_p0.5"] = round(100 * float((p[y == 0] >= 0.5).mean()), 2) \
        if (y == 0).any() else None
    out["fnr_pct_at_p0.5"] = round(100 * float((p[y == 1] < 0.5).mean()), 2) \
        if (y == 1).any() else None
    fams = {}
    for fam in sorted({it.family for it in items if it.label == 1}):
        sel = np.array([it.label == 0 or it.family == fam for it in items])
        ys = y[sel]
        fams[fam] = {"eer_pct": round(100 * eer(m[sel], ys), 2),
                     "fnr_pct_at_p0.5": round(100 * float((p[sel][ys == 1] < 0.5).mean()), 2),
                     "n_spoof": int(ys.sum())}
    out["per_family"] = fams
    gen = {}
    for fam in sorted({it.family for it in items if it.label == 0}):
        sel = np.array([it.label == 0 and it.family == fam for it in items])
        gen[fam] = {"fpr_pct_at_p0.5": round(100 * float((p[sel] >= 0.5).mean()), 2),
                    "n": int(sel.sum())}
    out["genuine_sources"] = gen
    return out


# ------------------------------------------------------------------ export


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    model.eval()
    example = torch.zeros(2, INPUT_SAMPLES)
    torch.onnx.export(
        model, (example,), str(path), input_names=["waveform"], output_names=["logits"],
        opset_version=17, dynamic_axes={"waveform": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False)


def ort_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def verify_onnx(model: torch.nn.Module, path: Path, windows: np.ndarray) -> float:
    sess = ort_session(path)
    with torch.no_grad():
        ref = model(torch.from_numpy(windows)).numpy()
    got = sess.run(["logits"], {"waveform": windows})[0]
    return float(np.abs(got - ref).max())


def measure_latency(path: Path, windows: np.ndarray) -> dict:
    out = {}
    for threads in (1,):
        sess = ort_session(path, threads)
        for b in (1, 8):
            x = np.ascontiguousarray(windows[:b])
            for _ in range(5):
                sess.run(["logits"], {"waveform": x})
            reps = 100 if b == 1 else 20
            walls = []
            cpu0 = time.process_time()
            for _ in range(reps):
                t = time.perf_counter()
                sess.run(["logits"], {"waveform": x})
                walls.append(time.perf_counter() - t)
            cpu = (time.process_time() - cpu0) / reps / b * 1000
            out[f"ort_threads{threads}_batch{b}"] = {
                "median_wall_ms_per_window": round(float(np.median(walls)) / b * 1000, 3),
                "p95_wall_ms_per_window": round(float(np.percentile(walls, 95)) / b * 1000, 3),
                "cpu_ms_per_window": round(cpu, 3), "reps": reps}
    out["_env"] = (f"onnxruntime CPU, {os.cpu_count()} vCPU shared with other jobs; "
                   f"{INPUT_SAMPLES}-sample window")
    return out


# -------------------------------------------------------------------- main


def corpus_summary(items: list[Item]) -> dict:
    c = Counter((it.source, it.family, "spoof" if it.label else "bonafide", it.split)
                for it in items)
    out: dict = {}
    for (src, fam, lab, split), n in sorted(c.items()):
        d = out.setdefault(f"{src}:{fam}", {"label": lab})
        d[split] = n
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", type=int, default=1,
                    help="train this many models, seeds --seed, --seed + 1, ... (the split "
                         "stays --seed's), and ship their SeedEnsemble")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-corpus", action="store_true", help="shared corpus only")
    ap.add_argument("--wait-corpus", type=float, default=0.0,
                    help="seconds to wait for .data/corpus/READY")
    ap.add_argument("--out", type=Path, default=MODEL_DIR / "voice_clone.onnx")
    ap.add_argument("--version", default=VERSION, help=f"sidecar version (default {VERSION})")
    ap.add_argument("--time-branch", action="store_true",
                    help="add the time-domain sub-band envelope branch (not in 1.0.0)")
    ap.add_argument("--exclude-families", default="",
                    help="comma-separated spoof families to leave out; the shipped "
                         "vc-cnn-1.0.0 was trained with world-vc,lpc-vocoder,phase-vocoder,"
                         "hnm-vocoder left out (they were added to the generator after it, "
                         "as was channel-vocoder: leave it out too to retrain 1.0.0)")
    ap.add_argument("--music", action="store_true",
                    help=f"augment.SoundBed with the tracks of the Debian package {MUSIC_DEB} "
                         "(not in 1.0.0; what lets the time branch pass the release gate)")
    ap.add_argument("--paired", type=float, default=0.0,
                    help="probability that a resynthesised spoof's genuine partner in the "
                         "batch is its own source recording, with the same crop and "
                         "degradations (see resynthesis_sources)")
    ap.add_argument("--crowd", type=float, default=0.0,
                    help="probability that a clip's noise is augment.add_crowd (4-12 "
                         "talkers at 0-10 dB SNR, music under them the bed's share of "
                         "the time) instead of the ordinary noise draw")
    ap.add_argument("--vocalisations", action="store_true",
                    help=f"a second augment.SoundBed of human cries, groans and laughs "
                         f"from the Debian package {VOCAL_DEB}: under 10 %% of clips of "
                         f"both classes, alone as 5 %% of genuine clips")
    args = ap.parse_args(argv)
    if args.members < 1:
        ap.error("--members must be at least 1")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t_start = time.time()

    deadline = time.time() + args.wait_corpus
    while not args.no_corpus and not corpus_ready() and time.time() < deadline:
        time.sleep(30)
    use_corpus = not args.no_corpus and corpus_ready()
    log(f"generated corpus: {'yes' if use_corpus else 'no (shared corpus only)'}")
    excluded = {f for f in args.exclude_families.split(",") if f}
    items = [it for it in gather(use_corpus, args.seed)
             if not (it.label == 1 and it.family in excluded)]
    log_family_counts(items)
    try:
        check_families(items, [f for f in expected_spoof_families(use_corpus)
                               if f not in excluded])
    except MissingFamilyError as exc:
        log(f"error: {exc}")
        return 2
    try:
        music, music_names = music_tracks() if args.music else ([], [])
        vocal, vocal_names = (vocalisation_reels(args.seed) if args.vocalisations
                              else ([], []))
    except MissingSoundsError as exc:
        log(f"error: {exc}")
        return 2
    if args.out.resolve() == (MODEL_DIR / "voice_clone.onnx").resolve():
        doc = write_splits(items, args.seed)
    else:  # a candidate: keep the shipped model's splits.json, write ours beside the ONNX
        doc = write_splits(items, args.seed, args.out.with_name("splits.json"))
    items = load_all(items)
    by_split = {s: [it for it in items if it.split == s] for s in SPLIT_NAMES}
    for s in SPLIT_NAMES:
        c = Counter(it.family for it in by_split[s])
        log(f"{s}: {len(by_split[s])} files {dict(sorted(c.items()))}")

    babble = [it.audio for it in by_split["train"] if it.label == 0]
    cfg = TrainConfig(steps=args.steps, seed=args.seed, time_branch=args.time_branch,
                      paired=args.paired, crowd=args.crowd)
    t_train = time.time()
    nets = []
    for i in range(args.members):
        if args.members > 1:
            log(f"member {i + 1} of {args.members}: seed {args.seed + i}")
        nets.append(train(by_split["train"], replace(cfg, seed=args.seed + i), babble, music,
                          vocal))
    train_s = time.time() - t_train

    # Calibration: wideband + phone-channel windows of the calibration split.
    cal_items = by_split["calib"]
    model: torch.nn.Module = nets[0] if args.members == 1 else seed_ensemble(
        nets, [it for it in cal_items if it.label == 0])
    cal_m = np.concatenate([margins(model, channel_windows(cal_items, ch))
                            for ch in ("wideband", "mulaw8k")])
    cal_y = np.array([it.label for it in cal_items] * 2)
    a, b = platt(cal_m, cal_y, balanced_weights([it.family for it in cal_items] * 2, cal_y))
    log(f"Platt a={a:.4f} b={b:.4f} on {len(cal_m)} windows; "
        f"calib EER {100 * eer(cal_m, cal_y):.2f} %")

    metrics: dict = {"protocol": ("first 64600 samples of each file (tiled if shorter), "
                                  "EER with spoof as positive class on the spoof margin; "
                                  "FPR/FNR at calibrated P(synthetic) = 0.5")}
    test_items = by_split["test"]
    shared_test = [it for it in test_items if it.source == "shared"]
    for ch in ("wideband", "mulaw8k"):
        w = channel_windows(test_items, ch)
        m = margins(model, w)
        metrics[f"test_{ch}"] = report(m, test_items, (a, b))
        idx = [i for i, it in enumerate(test_items) if it.source == "shared"]
        metrics[f"shared_test_{ch}"] = report(m[idx], shared_test, (a, b))
        log(f"test {ch}: EER {metrics[f'test_{ch}'].get('eer_pct')} % | shared-corpus test "
            f"EER {metrics[f'shared_test_{ch}'].get('eer_pct')} %")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, args.out)
    check = channel_windows(test_items[:8], "wideband")
    diff = verify_onnx(model, args.out, check)
    latency = measure_latency(args.out, channel_windows(test_items[:8], "wideband"))
    log(f"ONNX max |ORT - torch| = {diff:.2e}; latency {latency}")

    onnx_sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    families = sorted({it.family for it in by_split["train"] if it.label == 1})
    genuine = sorted({it.family for it in by_split["train"] if it.label == 0})
    sidecar = {
        "name": "voice_clone",
        "version": args.version,
        "architecture": (f"mean of {args.members} members' spoof margins, each a z-score "
                         "against its genuine calibration windows; each member: "
                         if args.members > 1 else "")
        + ARCH + (TIME_BRANCH_ARCH if cfg.time_branch else ""),
        "sample_rate": SAMPLE_RATE,
        "input_samples": INPUT_SAMPLES,
        "input_name": "waveform",
        "output_name": "logits",
        "bonafide_index": 1,
        "calibration": {"method": "platt", "a": a, "b": b,
                        "fit_on": ("calibration split, wideband + 8 kHz μ-law windows; "
                                   "weighted so each class, and each source or spoof "
                                   "family inside a class, counts equally")},
        "calibration_n": len(cal_m),
        "metrics": metrics,
        "latency_ms": latency,
        "onnx": {"opset": 17, "max_abs_diff_ort_vs_torch": diff,
                 "size_bytes": args.out.stat().st_size, "sha256": onnx_sha,
                 "parameters": count_parameters(model)},
        **({"ensemble": {"member_seeds": [args.seed + i for i in range(args.members)],
                         "margin_centre": model.centre.tolist(),
                         "margin_scale": model.scale.tolist()}}
           if isinstance(model, SeedEnsemble) else {}),
        "trained_families": families,
        "trained_genuine_sources": genuine,
        "provenance": (
            f"models/train_voice_clone.py --steps {args.steps} --seed {args.seed}"
            + (f" --members {args.members}" if args.members > 1 else "")
            + (" --time-branch" if args.time_branch else "")
            + (" --music" if args.music else "")
            + (f" --paired {args.paired}" if args.paired else "")
            + (f" --crowd {args.crowd}" if args.crowd else "")
            + (" --vocalisations" if args.vocalisations else "")
            + (f" --exclude-families {','.join(sorted(excluded))}" if excluded else "")
            + f" (torch {torch.__version__}, {args.threads} threads); data: shared corpus "
            f"../shared/data/speech (150 files)"
            + (f" + generated corpus .data/corpus ({sum(it.source == 'corpus' for it in items)}"
               " files, models/synth_corpus.py)" if use_corpus else "")
            + "; splits in models/splits.json"),
        "corpus_summary": corpus_summary(items),
        "training": {"steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr,
                     "weight_decay": cfg.weight_decay, "p_clean": cfg.p_clean,
                     "p_speed": cfg.p_speed,
                     "music_bed": ({"debian_package": MUSIC_DEB, "tracks": music_names}
                                   if music else None),
                     "crowd": cfg.crowd,
                     "vocalisation_bed": ({"debian_package": VOCAL_DEB, "clips": vocal_names}
                                          if vocal else None),
                     "train_seconds": round(train_s), "total_seconds":
                     round(time.time() - t_start),
                     "genuine_speakers_by_split": {s: len(v) for s, v
                                                   in doc["genuine_speakers"].items()}},
    }
    args.out.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    log(f"wrote {args.out} and sidecar; total {time.time() - t_start:.0f} s")
    log(f"release gate before shipping: python -m bench.failure_modes --model {args.out} "
        f"--out {args.out.with_name('failure_modes.json')} --gate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
