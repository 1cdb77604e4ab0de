"""The Guard: models loaded once, one batcher, many sessions.

This is the seam between adapters and the core (see ARCHITECTURE.md):
``open_session`` per stream, ``feed_audio`` in, ``events()`` out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from streamguard.calibration import calibration_sd
from streamguard.config import GuardConfig
from streamguard.detectors.phase_cue import PhaseCue, load_beside
from streamguard.detectors.voice_clone import VoiceCloneDetector
from streamguard.enrolment import EnrolmentStore
from streamguard.fleet import FleetConfig, FleetLink, FleetState
from streamguard.identity import IdentityService, embed_partials_fn, store_lookup
from streamguard.inference.batcher import MicroBatcher
from streamguard.inference.onnx_model import OnnxModel
from streamguard.policy import Policy
from streamguard.session import Session, SessionSettings
from streamguard.speaker import MODEL_NAME, SpeakerEncoder
from streamguard.watermark import WatermarkKey


def _now() -> datetime:
    return datetime.now(UTC)


class Guard:
    def __init__(self, config: GuardConfig, model: OnnxModel,
                 identity: IdentityService | None = None,
                 fleet: FleetLink | None = None, phase: PhaseCue | None = None) -> None:
        self.config = config
        self.identity = identity
        self.fleet = fleet
        self.model = model
        self.detector = VoiceCloneDetector(model.info, phase)
        window = config.window
        if window.length != model.info.input_samples:
            window = replace(window, length=model.info.input_samples,
                             first_after=min(window.first_after, model.info.input_samples))
        cal = self.detector.calibration
        self._settings = SessionSettings(
            window=window, fusion=config.fusion, vad_aggressiveness=config.vad_aggressiveness,
            max_gap_seconds=config.max_gap_seconds,
            media_batch_seconds=config.media_batch_ms / 1000,
            watermark_keys=config.watermark_keys, disclosure_hold_s=config.disclosure_hold_s,
            declared_agents=config.declared_agents,
            calibration_sd=calibration_sd(cal.method, cal.n), policy=config.policy,
            identity=identity, fleet=fleet,
        )
        self.batcher = MicroBatcher(
            self.detector.batch_runner(model.run), max_batch=config.max_batch,
            max_delay=config.max_delay_ms / 1000.0,
            max_pending_per_stream=config.max_pending_per_stream, workers=config.workers,
        )
        self.sessions: dict[str, Session] = {}
        self._tenant_policies: dict[str, Policy] = {}

    @classmethod
    def from_config(cls, config: GuardConfig | None = None, *,
                    enrolments: EnrolmentStore | None = None,
                    speaker_encoder: SpeakerEncoder | None = None,
                    fleet: FleetState | None = None,
                    fleet_config: FleetConfig | None = None) -> Guard:
        """Load the models once. With ``enrolments``, calls that claim an identity are
        checked against the claimed person's voiceprint (the GE2E encoder is loaded
        from the installed ``resemblyzer`` package unless ``speaker_encoder`` is given).
        With ``fleet`` (e.g. :class:`~streamguard.fleet.MemoryFleet`), every call's
        caller leg keeps a running voiceprint and fingerprint for campaign detection
        and watchlists; the same speaker micro-batcher serves both."""
        config = config or GuardConfig()
        model_path = config.resolved_model_path()
        model = OnnxModel(model_path, intra_op_threads=config.intra_op_threads)
        phase = load_beside(model_path) if config.phase_cue else None
        identity = None
        link = None
        if enrolments is not None or fleet is not None:
            encoder = speaker_encoder or SpeakerEncoder.load()
            fleet_config = fleet_config or FleetConfig()
            pending = max(config.identity.max_pending, fleet_config.max_pending)
            batcher = MicroBatcher(embed_partials_fn(encoder), max_batch=config.max_batch,
                                   max_delay=config.max_delay_ms / 1000.0,
                                   max_pending_per_stream=pending)
            if enrolments is not None:
                identity = IdentityService(encoder, store_lookup(enrolments, MODEL_NAME, _now),
                                           config.identity, batcher)
            if fleet is not None:
                link = FleetLink(fleet, batcher, fleet_config)
        return cls(config, model, identity, link, phase)

    def set_policy(self, tenant: str, policy: Policy) -> None:
        """A tenant's own published policy; it applies to streams opened from now on
        (a live call keeps the policy it started with, so its actions stay explainable)."""
        self._tenant_policies[tenant] = policy

    def policy_for(self, tenant: str) -> Policy:
        return self._tenant_policies.get(tenant, self.config.policy)

    def open_session(self, stream_id: str, *, tenant: str = "default", kind: str = "call",
                     meta: Mapping[str, Any] | None = None,
                     watermark_keys: tuple[WatermarkKey, ...] | None = None) -> Session:
        """Start judging a stream; must be called from a running event loop.

        ``watermark_keys`` overrides the configured trusted keys for this
        stream (a tenant's own list of allowed voice-bot vendors).
        """
        current = self.sessions.get(stream_id)
        if current is not None and not current.closed:
            raise ValueError(f"stream {stream_id!r} already has an open session")
        self.batcher.start()
        for speaker in self._speaker_batchers():
            speaker.start()
        settings = self._settings
        if tenant in self._tenant_policies:
            settings = replace(settings, policy=self._tenant_policies[tenant])
        if watermark_keys is not None:
            settings = replace(settings, watermark_keys=watermark_keys)
        session = Session(stream_id, tenant=tenant, kind=kind, meta=meta or {},
                          detector=self.detector, batcher=self.batcher, settings=settings)
        self.sessions[stream_id] = session
        return session

    async def close_session(self, stream_id: str) -> None:
        session = self.sessions.pop(stream_id, None)
        if session is not None:
            await session.close()

    async def close(self) -> None:
        for stream_id in list(self.sessions):
            await self.close_session(stream_id)
        await self.batcher.close()
        for speaker in self._speaker_batchers():
            await speaker.close()

    def _speaker_batchers(self) -> list[MicroBatcher]:
        batchers = [b.batcher for b in (self.identity, self.fleet) if b is not None]
        return list({id(b): b for b in batchers}.values())

    async def __aenter__(self) -> Guard:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
