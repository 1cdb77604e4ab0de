"""The bundled prompts (warning, hold notice, hold music) as 8 kHz PCM16."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from streamguard.media import decode_file


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

        return cls(load("warning.wav"), load("hold.wav"), load("hold_music.wav"))
