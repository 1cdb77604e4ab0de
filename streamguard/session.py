"""One live stream's path through the core: media in, events out.

``feed_audio`` does only cheap work (resample, VAD, windowing) and hands
windows to the shared batcher; it never awaits inference, so a slow model or
a misbehaving neighbour cannot stall this stream's media path.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from streamguard.calibration import sigmoid
from streamguard.campaign import CallSummary, CampaignAlert
from streamguard.detectors.voice_clone import VoiceCloneDetector
from streamguard.disclosure import DeclaredAgent, find_declared
from streamguard.errors import MediaError, SessionClosedError
from streamguard.events import (
    CampaignEvent,
    Event,
    IdentityCheck,
    Notice,
    State,
    Verdict,
    WatchlistMatch,
)
from streamguard.fingerprint import StreamingFingerprinter
from streamguard.fleet import FleetLink
from streamguard.fusion import FusionConfig, StreamFusion
from streamguard.identity import (
    CallVoiceTracker,
    ClaimTracker,
    IdentityService,
    IdentityStatus,
    judge,
)
from streamguard.inference.batcher import MicroBatcher
from streamguard.media.frames import AudioChunk
from streamguard.media.resample import StreamResampler
from streamguard.policy import Policy, PolicyEngine
from streamguard.speaker import MODEL_NAME
from streamguard.vad import FRAME_SAMPLES, SpeechGate
from streamguard.video import VideoWindow
from streamguard.watermark import Detection, Status, WatermarkDetector, WatermarkKey
from streamguard.windows import SlidingWindower, Window, WindowSpec

log = logging.getLogger("streamguard.session")


@dataclass(frozen=True, slots=True)
class SessionSettings:
    window: WindowSpec
    fusion: FusionConfig
    vad_aggressiveness: int
    max_gap_seconds: float
    media_batch_seconds: float
    calibration_sd: float
    policy: Policy
    watermark_keys: tuple[WatermarkKey, ...] = ()
    disclosure_hold_s: float = 15.0
    declared_agents: tuple[DeclaredAgent, ...] = ()
    identity: IdentityService | None = None
    fleet: FleetLink | None = None


class Session:
    def __init__(self, stream_id: str, *, tenant: str, kind: str, meta: Mapping[str, Any],
                 detector: VoiceCloneDetector, batcher: MicroBatcher,
                 settings: SessionSettings) -> None:
        self.stream_id = stream_id
        self.tenant = tenant
        self.kind = kind
        self.meta = dict(meta)
        self._detector = detector
        self._batcher = batcher
        self._settings = settings
        spec = settings.window
        self._fusion = StreamFusion(
            settings.fusion, calibration_sd=settings.calibration_sd,
            window_seconds=spec.length / spec.sample_rate, hop_seconds=spec.hop / spec.sample_rate,
        )
        self._policy = PolicyEngine(settings.policy)
        self._gate = SpeechGate(settings.vad_aggressiveness)
        self._resampler: StreamResampler | None = None
        self._windower: SlidingWindower | None = None
        self._expected_pts: int | None = None
        self._pending: list[npt.NDArray[np.int16]] = []
        self._pending_samples = 0
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._outstanding = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._seq = 0
        self._closed = False
        self.final: Verdict | None = None
        self.media_seconds = 0.0
        # Every stream is probed for disclosure marks (about 0.4 % of a core), so
        # unknown or forged marks are reported too, not only the trusted ones.
        self._watermark = WatermarkDetector(settings.watermark_keys,
                                            rate=settings.window.sample_rate)
        self._disclosure: Detection | None = None
        self._disclosed_until = -1.0
        self._reported_state = State.LISTENING
        claimed_agent, self._declared = find_declared(settings.declared_agents, tenant, self.meta)
        if self._declared is not None:
            self._notice("disclosure", f"declared AI agent {claimed_agent!r} "
                         f"(consent {self._declared.consent_ref})", 0.0, self._declared.to_dict())
        elif claimed_agent is not None:
            self._notice("disclosure", f"metadata declares AI agent {claimed_agent!r}, but the "
                         "tenant has registered no such agent: not trusted", 0.0)
        self._probability: float | None = None
        self._interval: tuple[float, float] | None = None
        self._claim: ClaimTracker | None = None
        # Fleet (bulk deception, watchlists): the caller leg of every call, claimed or not.
        self.call_id = str(self.meta.get("call_id") or stream_id)
        self._voice: CallVoiceTracker | None = None
        self._fingerprint: StreamingFingerprinter | None = None
        self._campaigns: set[str] = set()
        if settings.fleet is not None and self.meta.get("leg", "caller") == "caller":
            self._voice = CallVoiceTracker()
            self._fingerprint = StreamingFingerprinter(settings.window.sample_rate)
            settings.fleet.register(self.call_id, self)
        if settings.identity is not None:
            claimed = next((str(self.meta[k]) for k in settings.identity.config.claim_keys
                            if self.meta.get(k)), None)
            if claimed is not None:
                self.claim_identity(claimed)

    @property
    def policy(self) -> Policy:
        """The published policy this stream's actions follow."""
        return self._policy.policy

    @property
    def state(self) -> State:
        return self._fusion.state

    @property
    def on_hold(self) -> bool:
        return self._policy.on_hold

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def backlog(self) -> int:
        """Windows of this stream submitted but not yet scored or dropped."""
        return self._outstanding

    def feed_audio(self, chunk: AudioChunk) -> None:
        if self._closed:
            raise SessionClosedError(f"session {self.stream_id} is closed")
        if chunk.stream_id != self.stream_id:
            raise MediaError(f"chunk for {chunk.stream_id!r} fed to session {self.stream_id!r}")
        pcm = self._align(chunk)
        if len(pcm) == 0:
            return
        self.media_seconds += len(pcm) / chunk.sample_rate
        self._pending.append(pcm)
        self._pending_samples += len(pcm)
        if self._pending_samples >= self._settings.media_batch_seconds * chunk.sample_rate:
            self._process_pending()

    def _process_pending(self) -> None:
        """Resample, gate and window the media gathered since the last batch."""
        if not self._pending:
            return
        pcm = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_samples = [], 0
        assert self._resampler is not None
        self._process(self._resampler.push(pcm))

    def claim_identity(self, subject_id: str) -> None:
        """The call claims to be ``subject_id``: compare its voice with their voiceprint.

        Called from metadata at open or later (an agent's API call mid-call);
        a new claim starts a fresh comparison.
        """
        if self._closed:
            raise SessionClosedError(f"session {self.stream_id} is closed")
        service = self._settings.identity
        if service is None:
            self._notice("identity", "identity claimed but no speaker model is configured", 0.0)
            return
        self._claim = ClaimTracker(subject_id, service.reference(subject_id), service.config,
                                   service.model)
        if self._claim.reference is None:
            self._emit_identity(IdentityStatus.NOT_ENROLLED, None, self._clock())

    def add_video_window(self, window: VideoWindow) -> None:
        """Fused video evidence (e.g. the participant's face) becomes a verdict of its
        own detector; the policy acts on it like on voice verdicts, and a hold lasts
        until every detector that asked for it is clear again."""
        if self._closed:
            raise SessionClosedError(f"session {self.stream_id} is closed")
        estimate = window.estimate
        self._seq += 1
        verdict = Verdict(
            stream_id=self.stream_id, tenant=self.tenant, seq=self._seq,
            start=window.start, end=window.end, raw_score=window.logit,
            window_probability=sigmoid(window.logit), probability=estimate.probability,
            interval=estimate.interval, state=estimate.state,
            previous_state=estimate.previous_state, windows_scored=window.windows,
            detector=window.detector, model_version=window.model_version)
        self._queue.put_nowait(verdict)
        for action in self._policy.evaluate(verdict):
            self._queue.put_nowait(action)

    async def drained(self) -> None:
        """Wait until every submitted window is scored or dropped."""
        await self._idle.wait()

    async def events(self) -> AsyncIterator[Event]:
        """Verdicts and notices in order; ends after the final verdict."""
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item

    async def close(self) -> Verdict:
        """Score the tail, wait for outstanding windows, emit the final verdict."""
        if self.final is not None:
            return self.final
        if not self._closed:
            self._closed = True
            self._process_pending()
            if self._resampler is not None:
                self._process(self._resampler.flush())
            if self._windower is not None:
                frames, flags = self._gate.flush()
                windows = self._windower.push(frames, flags) + self._windower.flush()
                for window in windows:
                    self._submit(window)
        await self._idle.wait()
        if self.final is None and self._voice is not None and self._fingerprint is not None:
            link = self._settings.fleet
            assert link is not None
            self._fingerprint.flush()
            self._send_summary(self._clock())
            link.unregister(self.call_id, self)
            self._voice = None
        if self.final is None:
            claim = self._claim
            if claim is not None and claim.status is not None:
                similarity = claim.similarity()
                self._emit_identity(claim.status, similarity.as_dict() if similarity else None,
                                    self._clock(), final=True)
            self.final = self._final_verdict()
            self._queue.put_nowait(self.final)
            self._queue.put_nowait(None)
        return self.final

    def _align(self, chunk: AudioChunk) -> npt.NDArray[np.int16]:
        """Follow the media clock: fill short gaps, restart after long ones, drop repeats."""
        rate = chunk.sample_rate
        if self._resampler is None or self._resampler.input_rate != rate:
            if self._resampler is not None:
                self._process_pending()
                self._process(self._resampler.flush())
            self._resampler = StreamResampler(rate, self._settings.window.sample_rate)
            self._expected_pts = None
        pcm = chunk.pcm
        if chunk.pts is not None and self._expected_pts is not None:
            gap = chunk.pts - self._expected_pts
            if gap < 0:
                pcm = pcm[-gap:]
                if len(pcm) == 0:
                    return pcm
            elif gap > 0:
                at = self._expected_pts / rate
                if gap <= self._settings.max_gap_seconds * rate:
                    pcm = np.concatenate([np.zeros(gap, dtype=np.int16), pcm])
                    self._notice("gap", f"{gap / rate:.3f} s of missing media filled", at)
                else:
                    self._process_pending()
                    self._restart_windows(chunk.pts / rate)
                    self._notice("gap", f"{gap / rate:.1f} s without media; windows restart", at)
        if self._windower is None:
            self._restart_windows((chunk.pts or 0) / rate)
        if chunk.pts is not None:
            self._expected_pts = chunk.pts + len(chunk.pcm)
        elif self._expected_pts is not None:
            self._expected_pts += len(chunk.pcm)
        return pcm

    def _restart_windows(self, origin: float) -> None:
        self._gate = SpeechGate(self._settings.vad_aggressiveness)
        self._windower = SlidingWindower(self.stream_id, self._settings.window, origin)

    def _process(self, pcm16k: npt.NDArray[np.int16]) -> None:
        if len(pcm16k) == 0 or self._windower is None:
            return
        frames, flags = self._gate.push(pcm16k)
        if self._fingerprint is not None:
            self._fingerprint.push(pcm16k)
        self._speaker_partials(frames, flags)
        self._voice_partials(frames, flags)
        windows = self._windower.push(frames, flags)
        detection = self._watermark.push(pcm16k)
        if detection is not None:
            self._on_watermark(detection)
        elif self._watermark.latest is not None and self._watermark.latest.trusted:
            self._disclosed_until = self._media_time() + self._settings.disclosure_hold_s
        for window in windows:
            self._submit(window)

    def _speaker_partials(self, frames: npt.NDArray[np.int16],
                          flags: npt.NDArray[np.bool_]) -> None:
        claim, service = self._claim, self._settings.identity
        if claim is None or claim.reference is None or service is None:
            return
        for partial_audio in claim.partials.push(frames, flags, FRAME_SAMPLES):
            self._outstanding += 1
            self._idle.clear()
            at = self._clock()
            service.batcher.submit(f"{self.stream_id}#speaker", partial_audio,
                                   partial(self._on_embedding, claim, at),
                                   lambda reason: self._finished_one())

    def _on_embedding(self, claim: ClaimTracker, at: float,
                      embedding: npt.NDArray[np.float32], latency: float) -> None:
        if claim is self._claim:
            claim.add(embedding)
            self._update_identity(at)
        self._finished_one()

    # -- fleet: running voiceprint and fingerprint of the call ----------------------------
    def _voice_partials(self, frames: npt.NDArray[np.int16],
                        flags: npt.NDArray[np.bool_]) -> None:
        voice, link = self._voice, self._settings.fleet
        if voice is None or link is None:
            return
        for partial_audio in voice.partials.push(frames, flags, FRAME_SAMPLES):
            self._outstanding += 1
            self._idle.clear()
            at = self._clock()
            link.batcher.submit(f"{self.stream_id}#voice", partial_audio,
                                partial(self._on_voice_embedding, voice, at),
                                lambda reason: self._finished_one())

    def _on_voice_embedding(self, voice: CallVoiceTracker, at: float,
                            embedding: npt.NDArray[np.float32], latency: float) -> None:
        link = self._settings.fleet
        if voice is self._voice and link is not None:
            voice.add(embedding)
            self._check_watchlist(voice, link, at)
            if voice.due(link.config.first_summary_s, link.config.summary_every_s):
                self._send_summary(at)
        self._finished_one()

    def _send_summary(self, at: float) -> None:
        voice, link, fp = self._voice, self._settings.fleet, self._fingerprint
        if voice is None or link is None or fp is None:
            return
        fingerprint = fp.fingerprint
        end = self._media_time() if self._windower is not None else 0.0
        if len(fingerprint):
            fingerprint = fingerprint.window(end - link.config.fingerprint_window_s, math.inf)
        speech = voice.speech_seconds
        if voice.voiceprint.n_windows == 0 and not len(fingerprint):
            return  # nothing heard yet: no summary
        summary = CallSummary(self.call_id, self.tenant, link.clock(),
                              voice.voiceprint.embedding(), fingerprint,
                              speech if voice.voiceprint.n_windows else None)
        voice.mark_sent()
        link.observe(summary)

    def _check_watchlist(self, voice: CallVoiceTracker, link: FleetLink, at: float) -> None:
        config = link.config
        embedding = voice.voiceprint.embedding()
        if embedding is None or voice.speech_seconds < config.watchlist_min_speech_s:
            return
        try:
            candidates = link.fleet.watch_candidates(self.tenant, embedding)
        except Exception:
            log.exception("watchlist lookup failed for %s", self.stream_id)
            return
        for entry, cosine in candidates:
            if cosine < config.watchlist_threshold or entry.entry_id in voice.watch_hits:
                continue
            similarity = voice.voiceprint.similarity(entry.embedding)
            voice.watch_hits.add(entry.entry_id)
            match = WatchlistMatch(self.stream_id, self.tenant, entry.entry_id, entry.label,
                                   similarity.as_dict(), config.watchlist_threshold, at,
                                   MODEL_NAME)
            self._queue.put_nowait(match)
            for action in self._policy.evaluate_fleet(match, self._reported_state,
                                                      self._probability, self._interval):
                self._queue.put_nowait(action)

    def on_campaign(self, alert: CampaignAlert) -> None:
        """The fleet found this call in a campaign: report it once per campaign."""
        if self.final is not None or alert.campaign_id in self._campaigns:
            return
        self._campaigns.add(alert.campaign_id)
        event = CampaignEvent(self.stream_id, self.tenant, alert.campaign_id, alert.kind,
                              alert.calls, alert.new_calls, alert.calls_in_window,
                              alert.similarity.as_dict(), alert.is_new, alert.first_seen,
                              alert.last_seen, self._clock())
        self._queue.put_nowait(event)
        for action in self._policy.evaluate_fleet(event, self._reported_state,
                                                  self._probability, self._interval):
            self._queue.put_nowait(action)

    def _update_identity(self, at: float) -> None:
        claim = self._claim
        if claim is None:
            return
        similarity = claim.similarity()
        if similarity is None:
            return
        status = judge(similarity, self._probability, claim.config, claim.voiceprint.n_windows)
        if status is not claim.status:
            self._emit_identity(status, similarity.as_dict(), at)

    def _emit_identity(self, status: IdentityStatus, similarity: dict[str, float | int] | None,
                       at: float, final: bool = False) -> None:
        claim = self._claim
        assert claim is not None
        check = IdentityCheck(
            stream_id=self.stream_id, tenant=self.tenant, claimed_id=claim.claimed_id,
            status=status.value, previous_status=claim.status.value if claim.status else None,
            similarity=similarity, p_synthetic=self._probability, at=at, model=claim.model,
            final=final)
        claim.status = status
        self._queue.put_nowait(check)
        for action in self._policy.evaluate_identity(check, self._reported_state,
                                                     self._probability, self._interval):
            self._queue.put_nowait(action)

    def _clock(self) -> float:
        return self._media_time() if self._windower is not None else 0.0

    def _media_time(self) -> float:
        assert self._windower is not None
        rate = self._settings.window.sample_rate
        return self._windower.origin + self._windower.total_samples / rate

    def _on_watermark(self, detection: Detection) -> None:
        """A verified mark discloses the stream; any other mark is only reported."""
        at = self._media_time()
        detail = detection.to_dict()
        if detection.trusted:
            self._disclosure = detection
            self._disclosed_until = at + self._settings.disclosure_hold_s
            message = (f"verified disclosure watermark: vendor {detection.vendor_id} "
                       f"key {detection.key_id}")
        elif detection.status is Status.UNKNOWN:
            message = (f"watermark of an unknown key (vendor {detection.vendor_id} key "
                       f"{detection.key_id}): reported, not trusted")
        elif detection.status is Status.INVALID:
            message = (f"watermark claims vendor {detection.vendor_id} key "
                       f"{detection.key_id} but fails the keyed check: forged or damaged")
        else:
            message = "watermark present, payload not yet readable"
        self._notice("watermark", message, at, detail)

    def _disclosed(self, at: float) -> bool:
        if self._declared is not None:
            return True
        return self._disclosure is not None and at <= self._disclosed_until

    def _submit(self, window: Window) -> None:
        payload = self._detector.prepare(window.samples)
        self._outstanding += 1
        self._idle.clear()
        self._batcher.submit(self.stream_id, payload,
                             partial(self._on_result, window), partial(self._on_drop, window))

    def _on_result(self, window: Window, logits: npt.NDArray[np.float32], latency: float) -> None:
        score = self._detector.score(logits)
        estimate = self._fusion.add(score.logit)
        self._probability, self._interval = estimate.probability, estimate.interval
        disclosed = self._disclosed(window.end)
        state = State.DISCLOSED_SYNTHETIC if disclosed else estimate.state
        previous, self._reported_state = self._reported_state, state
        self._seq += 1
        verdict = Verdict(
            stream_id=self.stream_id, tenant=self.tenant, seq=self._seq,
            start=window.start, end=window.end,
            raw_score=score.margin, window_probability=score.probability,
            probability=estimate.probability, interval=estimate.interval,
            state=state, previous_state=previous,
            windows_scored=self._fusion.windows, detector=self._detector.name,
            model_version=self._detector.version, speech_ratio=window.speech_ratio,
            latency_ms=latency * 1000.0,
            disclosure=self._disclosure_detail() if disclosed else None,
            phase_z=score.phase_z,
        )
        self._queue.put_nowait(verdict)
        for action in self._policy.evaluate(verdict):
            self._queue.put_nowait(action)
        self._update_identity(window.end)
        self._finished_one()

    def _on_drop(self, window: Window, reason: str) -> None:
        self._notice("window_dropped", f"window {window.start:.2f}-{window.end:.2f} s: {reason}",
                     window.end)
        self._finished_one()

    def _finished_one(self) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()

    def _notice(self, kind: str, message: str, at: float,
                detail: dict[str, Any] | None = None) -> None:
        self._queue.put_nowait(Notice(self.stream_id, kind, message, at, detail))

    def _disclosure_detail(self) -> dict[str, Any] | None:
        if self._declared is not None:
            return self._declared.to_dict()
        if self._disclosure is None:
            return None
        return {"kind": "watermark", **self._disclosure.to_dict()}

    def _final_verdict(self) -> Verdict:
        """Whole-call judgement; a call that carried a verified disclosure stays disclosed."""
        overall = self._fusion.overall()
        end = self._media_time() if self._windower is not None else 0.0
        state = overall.state if overall else State.LISTENING
        if self._disclosure is not None or self._declared is not None:
            state = State.DISCLOSED_SYNTHETIC
        self._seq += 1
        return Verdict(
            stream_id=self.stream_id, tenant=self.tenant, seq=self._seq,
            start=0.0, end=end, raw_score=None, window_probability=None,
            probability=overall.probability if overall else None,
            interval=overall.interval if overall else None,
            state=state, previous_state=self._reported_state,
            windows_scored=self._fusion.windows, detector=self._detector.name,
            model_version=self._detector.version, final=True,
            disclosure=self._disclosure_detail(),
        )
