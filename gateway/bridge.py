"""One call's bridge between a telephony protocol and the core.

All three telephony adapters share this: the protocol classes turn wire bytes
into protocol-neutral events, the bridge turns those into core sessions (one
per call leg) and turns the core's actions back into call control — playing
the warning prompt, looping hold audio, clearing it on release — through a
small ``CallControl`` interface each adapter implements. Only wire formats
differ between adapters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gateway.prompts_store import Prompts
from streamguard import Action, ActionKind, AudioChunk, Guard, Session, StreamGuardError, Verdict
from streamguard.events import CampaignEvent, IdentityCheck, Notice, WatchlistMatch

log = logging.getLogger("streamguard.gateway")

CALLER = "caller"
FRAME_SECONDS = 0.02
TELEPHONY_RATE = 8000


class CallControl(Protocol):
    """What an adapter can do to its call. Audio is 8 kHz PCM16.

    ``playback_chunk_seconds`` is how much audio one ``send_audio`` carries:
    20 ms where the far end plays frames as they come (AudioSocket), more
    where the platform buffers and ``stop_audio`` flushes its buffer (Twilio
    ``clear``), which saves one message per 20 ms per call on hold.
    """

    playback_chunk_seconds: float

    async def send_audio(self, pcm: npt.NDArray[np.int16]) -> None: ...

    async def stop_audio(self) -> None: ...

    async def report(self, record: dict[str, Any]) -> None: ...


class EventSink(Protocol):
    def emit(self, record: dict[str, Any]) -> None: ...


class CallBridge:
    """Sessions for the legs of one call, plus the playback the policy asks for."""

    def __init__(self, guard: Guard, control: CallControl, sink: EventSink, prompts: Prompts,
                 *, protocol: str, scored_legs: tuple[str, ...] = ("caller", "agent")) -> None:
        self.guard = guard
        self.control = control
        self.sink = sink
        self.prompts = prompts
        self.protocol = protocol
        self.scored_legs = scored_legs
        self.call_id: str | None = None
        self.tenant = "default"
        self.parameters: dict[str, str] = {}
        self.sessions: dict[str, Session] = {}
        self._pumps: list[asyncio.Task[None]] = []
        self._playback: asyncio.Task[None] | None = None
        self.paused = False
        self.finals: dict[str, Verdict] = {}
        self.last_progress = asyncio.get_running_loop().time()
        self.frames_received = 0
        self._finishing: asyncio.Task[dict[str, Verdict]] | None = None

    def touch(self) -> None:
        """Record media progress; the adapters close a call that makes none for too long."""
        self.last_progress = asyncio.get_running_loop().time()

    def idle_deadline(self, idle_timeout_s: float) -> float:
        """Seconds left before this call counts as idle (a slow-loris peer sending
        bytes that never complete a frame, or a call that stopped sending audio)."""
        return self.last_progress + idle_timeout_s - asyncio.get_running_loop().time()

    def start(self, call_id: str, legs: tuple[str, ...], parameters: Mapping[str, str]) -> None:
        self.call_id = call_id
        self.parameters = dict(parameters)
        self.tenant = self.parameters.get("tenant", "default")
        claim_keys = self.guard.config.identity.claim_keys
        for leg in legs:
            if leg not in self.scored_legs or leg in self.sessions:
                continue
            # A claimed identity is the customer's: only the caller leg is checked against it.
            meta = {k: v for k, v in self.parameters.items()
                    if leg == CALLER or k not in claim_keys}
            session = self.guard.open_session(
                f"{call_id}:{leg}", tenant=self.tenant, kind="call",
                meta={"protocol": self.protocol, "leg": leg, **meta, "call_id": call_id})
            self.sessions[leg] = session
            self._pumps.append(asyncio.get_running_loop().create_task(self._pump(leg, session)))
        self.sink.emit({"type": "call_started", "call_id": call_id, "protocol": self.protocol,
                        "legs": list(legs), "tenant": self.tenant,
                        "parameters": self.parameters})

    def update(self, parameters: Mapping[str, str]) -> None:
        """Mid-call metadata (AudioHook ``update``); a newly claimed identity is checked."""
        self.parameters.update(parameters)
        claim_keys = self.guard.config.identity.claim_keys
        claimed = next((parameters[k] for k in claim_keys if parameters.get(k)), None)
        if claimed is None:
            return
        caller = self.sessions.get(CALLER)
        if caller is not None and not caller.closed:
            caller.claim_identity(claimed)

    def audio(self, leg: str, pcm: npt.NDArray[np.int16], pts: int | None = None,
              sample_rate: int = TELEPHONY_RATE) -> None:
        self.frames_received += 1
        session = self.sessions.get(leg)
        if session is None or session.closed or self.paused:
            return
        session.feed_audio(AudioChunk(session.stream_id, pcm, sample_rate, pts))

    async def finish(self, reason: str) -> dict[str, Verdict]:
        """Close every leg, wait for final verdicts, stop playback.

        Shutdown drain and the connection's own ending may both call this; the
        first reason wins and both wait for the same work.
        """
        if self._finishing is None:
            self._finishing = asyncio.get_running_loop().create_task(self._finish(reason))
        return await asyncio.shield(self._finishing)

    async def _finish(self, reason: str) -> dict[str, Verdict]:
        for leg, session in self.sessions.items():
            if leg not in self.finals:
                try:
                    self.finals[leg] = await session.close()
                except StreamGuardError as exc:
                    log.warning("closing %s failed: %s", session.stream_id, exc)
            await self.guard.close_session(session.stream_id)
        if self._pumps:
            await asyncio.gather(*self._pumps, return_exceptions=True)
            self._pumps.clear()
        self._stop_playback()
        if self.call_id is not None:
            self.sink.emit({"type": "call_ended", "call_id": self.call_id, "reason": reason,
                            "protocol": self.protocol, "frames_received": self.frames_received})
        return self.finals

    async def _pump(self, leg: str, session: Session) -> None:
        async for event in session.events():
            record = event.to_dict()
            record.update(call_id=self.call_id, leg=leg, protocol=self.protocol)
            self.sink.emit(record)
            changed = isinstance(event, Verdict) and (event.changed or event.final)
            if changed or isinstance(event, IdentityCheck | CampaignEvent | WatchlistMatch):
                await self._report(record)
            elif isinstance(event, Action):
                await self._apply(event)
                await self._report(record)
            elif isinstance(event, Notice):
                log.info("%s: %s %s", session.stream_id, event.kind, event.message)

    async def _report(self, record: dict[str, Any]) -> None:
        try:
            await self.control.report(record)
        except Exception as exc:  # a broken peer must not kill the pump
            log.warning("report to %s call %s failed: %s", self.protocol, self.call_id, exc)

    async def _apply(self, action: Action) -> None:
        if action.kind is ActionKind.WARN:
            if self._playback is None or self._playback.done():
                self._start_playback([self.prompts.warning], loop=None)
        elif action.kind is ActionKind.HOLD:
            self._stop_playback()
            self._start_playback([self.prompts.hold], loop=self.prompts.hold_music)
        elif action.kind is ActionKind.RELEASE:
            self._stop_playback()
            try:
                await self.control.stop_audio()
            except Exception as exc:
                log.warning("stop audio on %s failed: %s", self.call_id, exc)

    def _start_playback(self, clips: list[npt.NDArray[np.int16]],
                        loop: npt.NDArray[np.int16] | None) -> None:
        self._playback = asyncio.get_running_loop().create_task(self._play(clips, loop))

    def _stop_playback(self) -> None:
        if self._playback is not None and not self._playback.done():
            self._playback.cancel()
        self._playback = None

    async def _play(self, clips: list[npt.NDArray[np.int16]],
                    loop: npt.NDArray[np.int16] | None) -> None:
        """Send audio in chunks one chunk ahead of real time, then loop ``loop`` until
        cancelled; staying just ahead keeps the far end fed without queueing much."""
        chunk = max(int(TELEPHONY_RATE * FRAME_SECONDS),
                    int(TELEPHONY_RATE * self.control.playback_chunk_seconds))
        clock = asyncio.get_running_loop()
        started, sent = clock.time(), 0
        try:
            while True:
                for clip in clips:
                    for start in range(0, len(clip), chunk):
                        piece = clip[start:start + chunk]
                        frames = -(-len(piece) // int(TELEPHONY_RATE * FRAME_SECONDS))
                        padded = frames * int(TELEPHONY_RATE * FRAME_SECONDS)
                        if len(piece) < padded:
                            piece = np.pad(piece, (0, padded - len(piece)))
                        await self.control.send_audio(piece)
                        sent += len(piece)
                        ahead = started + (sent - len(piece)) / TELEPHONY_RATE - clock.time()
                        await asyncio.sleep(max(0.0, ahead))
                if loop is None:
                    return
                clips = [loop]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # peer gone: playback just ends
            log.info("playback on %s stopped: %s", self.call_id, exc)
