"""What the core hands out: verdicts, actions and notices, as plain typed records.

Adapters serialise these with ``to_dict()``; every verdict carries its window
times, raw score, calibrated probability with an uncertainty interval, the
state, and the model version that produced it, so a decision can be traced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class State(StrEnum):
    LISTENING = "listening"
    CLEAR = "clear"
    SUSPECT = "suspect"
    SYNTHETIC = "synthetic"
    DISCLOSED_SYNTHETIC = "disclosed_synthetic"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The stream's judgement after a scored window (or at close, ``final``).

    ``probability`` is P(speech is synthetic) fused over recent windows and
    ``interval`` its uncertainty (90 % by default); both are ``None`` only for
    a final verdict on a stream that never had enough speech. ``disclosure``
    says why a stream is ``disclosed_synthetic`` (e.g. the verified watermark).
    ``phase_z`` is the window's relative-phase cue z-score against genuine speech
    (None without the cue or when the window had too little voicing to judge), so
    an analyst can see when the cue, not the model, raised the score.
    """

    stream_id: str
    tenant: str
    seq: int
    start: float
    end: float
    raw_score: float | None
    window_probability: float | None
    probability: float | None
    interval: tuple[float, float] | None
    state: State
    previous_state: State
    windows_scored: int
    detector: str
    model_version: str
    speech_ratio: float | None = None
    latency_ms: float | None = None
    final: bool = False
    disclosure: dict[str, Any] | None = None
    phase_z: float | None = None

    @property
    def changed(self) -> bool:
        return self.state is not self.previous_state

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["type"] = "verdict"
        out["state"] = self.state.value
        out["previous_state"] = self.previous_state.value
        out["changed"] = self.changed
        out["interval"] = list(self.interval) if self.interval else None
        return out


@dataclass(frozen=True, slots=True)
class Notice:
    """Something an operator should know that is not a judgement.

    Kinds: ``window_dropped`` (overload or inference failure),
    ``media_error`` (bad input that was discarded), ``gap`` (missing media
    filled with silence), ``watermark`` (a disclosure watermark was found,
    lost, or could not be trusted; ``detail`` carries the detection).
    """

    stream_id: str
    kind: str
    message: str
    at: float
    detail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["type"] = "notice"
        return out


class ActionKind(StrEnum):
    ANNOTATE = "annotate"
    WARN = "warn"
    HOLD = "hold"
    RELEASE = "release"
    STEP_UP = "step_up"
    NOTIFY = "notify"
    LABEL = "label"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    stream_id: str
    tenant: str
    rule: str
    reason: str
    state: State
    probability: float | None
    interval: tuple[float, float] | None
    at: float
    policy_version: str
    text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(type="action", kind=self.kind.value, state=self.state.value,
                   interval=list(self.interval) if self.interval else None)
        return out


@dataclass(frozen=True, slots=True)
class IdentityCheck:
    """How the live voice compares with the identity the call claims.

    ``status`` is one of ``streamguard.identity.IdentityStatus``;
    ``similarity`` the cosine of the call's running voiceprint to the claimed
    person's enrolled one with its interval (``value``, ``low``, ``high``,
    ``n_windows``, ``speech_seconds``), ``p_synthetic`` the voice-clone
    evidence it was combined with. No embedding is ever carried.
    """

    stream_id: str
    tenant: str
    claimed_id: str
    status: str
    previous_status: str | None
    similarity: dict[str, float | int] | None
    p_synthetic: float | None
    at: float
    model: str
    final: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["type"] = "identity"
        return out


@dataclass(frozen=True, slots=True)
class CampaignEvent:
    """Bulk deception: this call is one of several sharing a voice or recorded audio.

    ``kind`` is ``same_voice``, ``same_script`` or ``replay`` (see
    :mod:`streamguard.campaign`); ``calls`` every call attributed to the
    campaign so far, ``new_calls`` those that joined with this event;
    ``similarity`` the cluster statistics (``measure``, ``min``, ``mean``,
    ``max``). ``stream_id`` is ``None`` for the fleet-wide record emitted once
    per campaign update (not tied to one session). No voiceprint is carried.
    """

    stream_id: str | None
    tenant: str
    campaign_id: str
    kind: str
    calls: tuple[str, ...]
    new_calls: tuple[str, ...]
    calls_in_window: int
    similarity: dict[str, Any]
    is_new: bool
    first_seen: float
    last_seen: float
    at: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(type="campaign", calls=list(self.calls), new_calls=list(self.new_calls))
        return out


@dataclass(frozen=True, slots=True)
class WatchlistMatch:
    """The call's voice matches an entry of the tenant's watchlist of known fraud voices.

    ``similarity``: cosine of the call's running voiceprint to the entry with
    its interval (``value``, ``low``, ``high``, ``n_windows``,
    ``speech_seconds``); ``threshold`` the bar ``value`` cleared.
    """

    stream_id: str
    tenant: str
    entry_id: str
    label: str
    similarity: dict[str, float | int]
    threshold: float
    at: float
    model: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["type"] = "watchlist"
        return out


Event = Verdict | Notice | Action | IdentityCheck | CampaignEvent | WatchlistMatch
