"""Score whole recordings through the live pipeline, as fast as the model allows.

Files are fed in hop-sized chunks and the feeder waits whenever its window is
still being scored, so no window is dropped for overload: a file scan must be
complete, unlike a live call that must stay current.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streamguard.events import Action, Notice, Verdict
from streamguard.guard import Guard
from streamguard.media.frames import AudioChunk


@dataclass(slots=True)
class ScanResult:
    stream_id: str
    duration: float
    verdicts: list[Verdict] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    final: Verdict | None = None


async def scan_pcm(guard: Guard, stream_id: str, pcm: npt.NDArray[np.int16],
                   sample_rate: int) -> ScanResult:
    session = guard.open_session(stream_id, kind="file")
    result = ScanResult(stream_id, len(pcm) / sample_rate)
    step = max(sample_rate // 10, 1)
    try:
        for start in range(0, len(pcm), step):
            session.feed_audio(AudioChunk(stream_id, pcm[start:start + step], sample_rate))
            if session.backlog:
                await session.drained()
        result.final = await session.close()
    finally:
        await guard.close_session(stream_id)
    async for event in session.events():
        if isinstance(event, Verdict):
            if not event.final:
                result.verdicts.append(event)
        elif isinstance(event, Action):
            result.actions.append(event)
        elif isinstance(event, Notice):
            result.notices.append(event)
    return result
