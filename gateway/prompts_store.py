"""The bundled prompts (warning, hold notice, hold music) as 8 kHz PCM16.

The spoken prompts are synthetic speech that we inject into calls, so they
disclose themselves: at load, :meth:`Prompts.bundled` embeds the sgwm1 audio
watermark with StreamGuard's own key (:func:`disclosure_key`: vendor 0,
key id 1). Anyone holding that key (``streamguard watermark detect --own``)
can verify that audio came from this installation's gateway. The hold music
is not speech and stays unmarked.

The key's secret is ``$STREAMGUARD_DISCLOSURE_SECRET`` (hex, at least 16
bytes) when set, else a per-installation secret created on first use in the
data dir (``$STREAMGUARD_DATA_DIR`` or the XDG data dir,
``streamguard/disclosure.key``, mode 0600).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamguard.media import decode_file, float_to_pcm16, pcm16_to_float
from streamguard.watermark import WatermarkKey, embed

DISCLOSURE_VENDOR_ID = 0
DISCLOSURE_KEY_ID = 1
DISCLOSURE_KEY_FILE = "disclosure.key"
SECRET_ENV = "STREAMGUARD_DISCLOSURE_SECRET"
SECRET_BYTES = 32


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$STREAMGUARD_DATA_DIR``, else ``$XDG_DATA_HOME/streamguard`` (~/.local/share)."""
    env = os.environ if env is None else env
    if env.get("STREAMGUARD_DATA_DIR"):
        return Path(env["STREAMGUARD_DATA_DIR"])
    base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else (
        Path.home() / ".local" / "share")
    return base / "streamguard"


def private_file(path: Path, make: bytes) -> bytes:
    """Contents of ``path``; created first (mode 0600, exclusive) with ``make`` if missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()  # created earlier (or by a concurrent process)
    try:
        os.write(fd, make)
    finally:
        os.close(fd)
    return make


def disclosure_secret(env: Mapping[str, str] | None = None) -> bytes:
    env = os.environ if env is None else env
    text = env.get(SECRET_ENV)
    if text:
        try:
            secret = bytes.fromhex(text.strip())
        except ValueError as exc:
            raise ValueError(f"${SECRET_ENV} must be hex ({exc})") from exc
    else:
        path = data_dir(env) / DISCLOSURE_KEY_FILE
        raw = private_file(path, (secrets.token_hex(SECRET_BYTES) + "\n").encode())
        try:
            secret = bytes.fromhex(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: not a hex secret ({exc})") from exc
    if len(secret) < 16:
        raise ValueError("the disclosure secret must be at least 16 bytes")
    return secret


def disclosure_key(env: Mapping[str, str] | None = None) -> WatermarkKey:
    """StreamGuard's own watermark key for the media it injects (vendor 0, key id 1)."""
    return WatermarkKey(DISCLOSURE_VENDOR_ID, DISCLOSURE_KEY_ID, disclosure_secret(env))


def mark_own(pcm: npt.NDArray[np.int16], rate: int,
             key: WatermarkKey | None = None) -> npt.NDArray[np.int16]:
    """``pcm`` with our disclosure watermark embedded."""
    marked = embed(pcm16_to_float(pcm), rate, key or disclosure_key())
    return float_to_pcm16(marked)


@dataclass(frozen=True, slots=True)
class Prompts:
    warning: npt.NDArray[np.int16]
    hold: npt.NDArray[np.int16]
    hold_music: npt.NDArray[np.int16]

    @classmethod
    def bundled(cls) -> Prompts:
        base = resources.files("gateway") / "prompts"

        def load(name: str) -> npt.NDArray[np.int16]:
            return decode_file(str(base / name), sample_rate=8000).pcm

        key = disclosure_key()
        return cls(mark_own(load("warning.wav"), 8000, key),
                   mark_own(load("hold.wav"), 8000, key), load("hold_music.wav"))
