"""Bulk deception: one voice or one recorded script across many recent calls.

Fed per-call summaries (:class:`CallSummary`: the call's running voiceprint
and audio fingerprint so far), :class:`CampaignDetector` keeps, per tenant,
the calls of a sliding time window and raises a :class:`CampaignAlert` when

- ``same_voice``: at least ``min_calls`` calls of the window have voiceprints
  within ``voice_threshold`` cosine of one cluster centroid (online
  clustering: a call joins the nearest centroid if it is close enough, else
  starts a cluster; clusters whose centroids come within the threshold merge;
  calls leaving the window leave their cluster);
- ``same_script``: at least ``min_calls`` calls of the window are connected by
  fingerprint matches of ``script_min_matches`` time-aligned hashes or more
  (the same recorded audio played into every call; see
  :mod:`streamguard.fingerprint` for what "same script" can and cannot mean
  for an audio fingerprint: the same recording, not the same text re-spoken);
- ``replay`` (optional, ``replay_alerts``): a single call whose audio matches
  audio of an earlier call still in the window. **Replay here means "matches
  a previously seen call's audio"**, nothing more: a recording never heard
  before is not recognised as one.

Alerts for a campaign share a ``campaign_id``; the first has ``is_new`` set,
later ones (each time another call joins) list the joining call in
``new_calls``, so an adapter can warn that call too. Tenants never see each
other's calls.

Choice of ``voice_threshold`` = 0.82 (cosine of a call's voiceprint to a
cluster centroid), measured with the GE2E encoder (:mod:`streamguard.speaker`)
on 71 distinct LibriSpeech test-other utterances of 10 speakers
(shared/data/speech bona fide + shared/reference/ge2e/audio), full
utterances after the phone channel (16 → 8 kHz, G.711 μ-law, back to 16 kHz):

- a call against the centroid of 4 other calls of the *same* speaker:
  min 0.839, 5th percentile 0.873, mean 0.917;
- a call against the centroid of 4 calls of *another* speaker: max 0.819,
  99th percentile 0.767;
- call against call: same speaker min 0.759 (5th pct 0.799), different
  speakers 99th pct 0.742, max 0.806.

0.82 sits between the highest different-speaker cosine to a centroid
(0.819) and the lowest same-speaker one (0.839). Wideband figures are
similar (same ≥ 0.825, different ≤ 0.754 to a centroid). The Piper TTS
voice scores 0.853–0.98 between its own sentences (phone channel), so a
synthetic-voice campaign clusters easily; one eSpeak NG variant 0.825–0.99
with itself, and different eSpeak variants up to 0.948 (one formant
synthesiser). Early in a cluster its centroid is one call, where the
pairwise figures apply: a same-speaker call may then fail to join (5 % are
below 0.80) and start a second cluster; the merge step rejoins them once
their centroids firm up. Ten speakers is a small sample: set the threshold
on the tenant's own traffic before acting on alerts automatically. A genuine
person who calls ``min_calls`` times within the window *is* the same voice
across calls and will be reported; policy decides what that means.
Summaries should arrive roughly in time order (the window slides with the
newest timestamp seen).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamguard.fingerprint import Fingerprint, FingerprintIndex

__all__ = [
    "DEFAULT_VOICE_THRESHOLD",
    "CallSummary",
    "CampaignAlert",
    "CampaignDetector",
    "CampaignKind",
    "CampaignPolicy",
    "SimilarityStats",
]

DEFAULT_VOICE_THRESHOLD = 0.82
EMBEDDING_DIM = 256
CampaignKind = Literal["same_voice", "same_script", "replay"]
Float32 = npt.NDArray[np.float32]
_MAX_LISTED_CALLS = 10_000


@dataclass(frozen=True, slots=True)
class CampaignPolicy:
    """Per-tenant campaign rules.

    ``min_calls`` within ``window_s`` seconds make a campaign; voiceprints
    from less than ``min_speech_s`` of speech are too uncertain to cluster
    (``None`` in a summary means unknown and is accepted);
    ``script_min_matches``: time-aligned fingerprint hashes for two calls to
    count as the same audio (different speech aligns ≤ ~5 on the shared
    corpus, the same 4–8 s clip through a phone channel ≥ 50).
    """

    min_calls: int = 5
    window_s: float = 600.0
    voice_threshold: float = DEFAULT_VOICE_THRESHOLD
    script_min_matches: int = 20
    min_speech_s: float = 3.0
    replay_alerts: bool = True

    def __post_init__(self) -> None:
        if self.min_calls < 2 or self.window_s <= 0 or self.script_min_matches < 1:
            raise ValueError("need min_calls >= 2, window_s > 0, script_min_matches >= 1")
        if not 0.0 < self.voice_threshold <= 1.0 or self.min_speech_s < 0:
            raise ValueError("voice_threshold must lie in (0, 1], min_speech_s >= 0")


@dataclass(frozen=True, slots=True)
class CallSummary:
    """What the fleet needs to know about one call (so far).

    ``timestamp``: seconds on a clock shared by the tenant's calls (e.g. Unix
    time when the summary was taken); ``voiceprint``: the call's running
    voiceprint (unit length, 256-d, :class:`~streamguard.speaker.RunningVoiceprint`);
    ``fingerprint``: the call's audio fingerprint so far. Either may be
    ``None``. Sending a newer summary for the same call replaces the old one.
    """

    call_id: str
    tenant: str
    timestamp: float
    voiceprint: Float32 | None = None
    fingerprint: Fingerprint | None = None
    speech_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class SimilarityStats:
    """``measure`` is ``cosine_to_centroid`` (same_voice) or ``aligned_hashes``."""

    measure: str
    min: float
    mean: float
    max: float

    def as_dict(self) -> dict[str, Any]:
        return {"measure": self.measure, "min": round(self.min, 4),
                "mean": round(self.mean, 4), "max": round(self.max, 4)}


@dataclass(frozen=True, slots=True)
class CampaignAlert:
    """One campaign (or replay) event. ``calls``: every call attributed so far."""

    campaign_id: str
    tenant: str
    kind: CampaignKind
    calls: tuple[str, ...]
    new_calls: tuple[str, ...]
    calls_in_window: int
    first_seen: float
    last_seen: float
    similarity: SimilarityStats
    is_new: bool

    def as_dict(self) -> dict[str, Any]:
        return {"type": "campaign", "campaign_id": self.campaign_id, "tenant": self.tenant,
                "kind": self.kind, "calls": list(self.calls), "new_calls": list(self.new_calls),
                "calls_in_window": self.calls_in_window, "first_seen": self.first_seen,
                "last_seen": self.last_seen, "similarity": self.similarity.as_dict(),
                "is_new": self.is_new}


@dataclass(slots=True)
class _Campaign:
    campaign_id: str
    kind: CampaignKind
    first_seen: float
    last_seen: float
    calls: dict[str, None] = field(default_factory=dict)  # ordered set
    alerted: bool = False


@dataclass(slots=True)
class _Cluster:
    total: npt.NDArray[np.float64]
    members: set[str] = field(default_factory=set)
    campaign: _Campaign | None = None

    def centroid(self) -> npt.NDArray[np.float64]:
        norm = float(np.linalg.norm(self.total))
        return self.total / norm if norm > 0 else self.total


@dataclass(slots=True)
class _Call:
    call_id: str
    timestamp: float
    voiceprint: npt.NDArray[np.float64] | None = None
    cluster: int | None = None
    script_edges: dict[str, int] = field(default_factory=dict)  # other call -> aligned
    replay_reported: bool = False


class _TenantState:
    def __init__(self, tenant: str, policy: CampaignPolicy, ids: Iterable[int]) -> None:
        self.tenant = tenant
        self.policy = policy
        self._ids = iter(ids)
        self.calls: dict[str, _Call] = {}
        self.order: deque[tuple[float, str]] = deque()  # (timestamp, call) as received
        self.clusters: dict[int, _Cluster] = {}
        self.script_campaigns: dict[str, _Campaign] = {}  # call -> its script campaign
        self.index = FingerprintIndex(min_aligned=policy.script_min_matches, min_score=0.0)
        self._cluster_ids = itertools.count()

    def new_campaign(self, kind: CampaignKind, t: float) -> _Campaign:
        return _Campaign(f"{self.tenant}:{kind}:{next(self._ids)}", kind, t, t)

    # -- window ----------------------------------------------------------------------------
    def expire(self, now: float) -> None:
        cutoff = now - self.policy.window_s
        while self.order and self.order[0][0] < cutoff:
            t, cid = self.order.popleft()
            call = self.calls.get(cid)
            if call is not None and call.timestamp == t:
                self._drop(call)

    def _drop(self, call: _Call) -> None:
        self._leave_cluster(call)
        for other in call.script_edges:
            if other in self.calls:
                self.calls[other].script_edges.pop(call.call_id, None)
        call.script_edges.clear()
        self.index.remove(call.call_id)
        self.script_campaigns.pop(call.call_id, None)
        del self.calls[call.call_id]

    def _leave_cluster(self, call: _Call) -> None:
        if call.cluster is None or call.voiceprint is None:
            return
        cluster = self.clusters[call.cluster]
        cluster.members.discard(call.call_id)
        cluster.total -= call.voiceprint
        if not cluster.members:
            del self.clusters[call.cluster]
        call.cluster = None

    # -- voices ----------------------------------------------------------------------------
    def cluster_voice(self, call: _Call, vector: npt.NDArray[np.float64]) -> int:
        self._leave_cluster(call)
        call.voiceprint = vector
        thr = self.policy.voice_threshold
        best, best_sim = None, -math.inf
        for key, cluster in self.clusters.items():
            sim = float(cluster.centroid() @ vector)
            if sim > best_sim:
                best, best_sim = key, sim
        if best is None or best_sim < thr:
            best = next(self._cluster_ids)
            self.clusters[best] = _Cluster(np.zeros(EMBEDDING_DIM, dtype=np.float64))
        cluster = self.clusters[best]
        cluster.members.add(call.call_id)
        cluster.total += vector
        call.cluster = best
        return self._merge(best)

    def _merge(self, key: int) -> int:
        """Merge clusters whose centroid is within the threshold of ``key``'s."""
        thr = self.policy.voice_threshold
        while True:
            centroid = self.clusters[key].centroid()
            other = next((k for k, c in self.clusters.items()
                          if k != key and float(c.centroid() @ centroid) >= thr), None)
            if other is None:
                return key
            big, small = ((key, other) if len(self.clusters[key].members)
                          >= len(self.clusters[other].members) else (other, key))
            keep, gone = self.clusters[big], self.clusters.pop(small)
            keep.total += gone.total
            keep.members |= gone.members
            for cid in gone.members:
                self.calls[cid].cluster = big
            if gone.campaign is not None:
                if keep.campaign is None:
                    keep.campaign = gone.campaign
                elif gone.campaign is not keep.campaign:
                    first, second = sorted((keep.campaign, gone.campaign),
                                           key=lambda c: (c.first_seen, c.campaign_id))
                    first.calls.update(second.calls)
                    first.alerted = first.alerted or second.alerted
                    keep.campaign = first
            key = big

    # -- scripts ---------------------------------------------------------------------------
    def component(self, start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for other in self.calls[todo.pop()].script_edges:
                if other not in seen and other in self.calls:
                    seen.add(other)
                    todo.append(other)
        return seen


class CampaignDetector:
    """Online same-voice / same-script campaign detection over recent calls.

    ``policies`` maps tenant → :class:`CampaignPolicy`; other tenants get
    ``default``. Call :meth:`observe` with each (updated) call summary; it
    returns the alerts the summary caused. Memory is bounded by the calls
    within the window (one 256-d vector and one fingerprint each).
    """

    def __init__(self, policies: Mapping[str, CampaignPolicy] | None = None,
                 default: CampaignPolicy | None = None) -> None:
        self._policies = dict(policies or {})
        self._default = default or CampaignPolicy()
        self._tenants: dict[str, _TenantState] = {}
        self._ids = itertools.count(1)

    def policy(self, tenant: str) -> CampaignPolicy:
        return self._policies.get(tenant, self._default)

    def _state(self, tenant: str) -> _TenantState:
        state = self._tenants.get(tenant)
        if state is None:
            state = _TenantState(tenant, self.policy(tenant), self._ids)
            self._tenants[tenant] = state
        return state

    def calls_in_window(self, tenant: str) -> int:
        state = self._tenants.get(tenant)
        return len(state.calls) if state else 0

    def expire(self, now: float) -> None:
        """Drop calls older than each tenant's window (``observe`` does this too)."""
        for state in self._tenants.values():
            state.expire(now)

    def forget(self, call_id: str, tenant: str) -> bool:
        """Remove a call entirely (e.g. erasure request); True if it was held."""
        state = self._tenants.get(tenant)
        if state is None or call_id not in state.calls:
            return False
        state._drop(state.calls[call_id])
        return True

    def observe(self, summary: CallSummary) -> list[CampaignAlert]:
        state = self._state(summary.tenant)
        policy = state.policy
        t = float(summary.timestamp)
        if not math.isfinite(t):
            raise ValueError("timestamp must be finite")
        state.expire(t)
        call = state.calls.get(summary.call_id)
        if call is None:
            call = _Call(summary.call_id, t)
            state.calls[summary.call_id] = call
        call.timestamp = max(call.timestamp, t)
        state.order.append((call.timestamp, call.call_id))
        alerts: list[CampaignAlert] = []
        vector = self._vector(summary.voiceprint)
        enough_speech = summary.speech_seconds is None or (
            summary.speech_seconds >= policy.min_speech_s)
        if vector is not None and enough_speech:
            key = state.cluster_voice(call, vector)
            alert = self._voice_alert(state, key, call)
            if alert is not None:
                alerts.append(alert)
        if summary.fingerprint is not None and len(summary.fingerprint):
            alerts.extend(self._script_alerts(state, call, summary.fingerprint))
        return alerts

    @staticmethod
    def _vector(voiceprint: npt.ArrayLike | None) -> npt.NDArray[np.float64] | None:
        if voiceprint is None:
            return None
        v = np.asarray(voiceprint, dtype=np.float64).reshape(-1)
        if v.shape != (EMBEDDING_DIM,) or not np.isfinite(v).all():
            raise ValueError(f"voiceprint must be a finite {EMBEDDING_DIM}-d vector")
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 0 else None

    def _voice_alert(self, state: _TenantState, key: int,
                     call: _Call) -> CampaignAlert | None:
        cluster = state.clusters[key]
        if len(cluster.members) < state.policy.min_calls:
            return None
        centroid = cluster.centroid()
        members = sorted(cluster.members, key=lambda c: (state.calls[c].timestamp, c))
        sims = np.array([float(state.calls[c].voiceprint @ centroid)  # type: ignore[operator]
                         for c in members])
        stats = SimilarityStats("cosine_to_centroid", float(sims.min()), float(sims.mean()),
                                float(sims.max()))
        if cluster.campaign is None:
            cluster.campaign = state.new_campaign("same_voice", state.calls[members[0]].timestamp)
        return self._emit(state, cluster.campaign, members, stats)

    def _script_alerts(self, state: _TenantState, call: _Call,
                       fp: Fingerprint) -> list[CampaignAlert]:
        policy = state.policy
        alerts: list[CampaignAlert] = []
        matches = state.index.query(fp, limit=1000, exclude=call.call_id)
        state.index.add(call.call_id, fp, call.timestamp)
        for found in matches:
            peer = state.calls.get(found.call_id)
            if peer is None:
                continue
            call.script_edges[found.call_id] = found.aligned
            peer.script_edges[call.call_id] = found.aligned
        if matches and policy.replay_alerts and not call.replay_reported:
            call.replay_reported = True
            best = matches[0]
            replay = state.new_campaign("replay", call.timestamp)
            replay.first_seen = min(best.at_time, call.timestamp)
            replay.calls.update({best.call_id: None, call.call_id: None})
            replay_alert = self._emit(state, replay, [best.call_id, call.call_id],
                                      SimilarityStats("aligned_hashes", best.aligned,
                                                      best.aligned, best.aligned))
            if replay_alert is not None:
                alerts.append(replay_alert)
        component = state.component(call.call_id)
        if len(component) < policy.min_calls:
            return alerts
        members = sorted(component, key=lambda c: (state.calls[c].timestamp, c))
        campaigns = {id(c): c for c in (state.script_campaigns.get(m) for m in members) if c}
        if campaigns:
            campaign = min(campaigns.values(), key=lambda c: (c.first_seen, c.campaign_id))
            for merged in campaigns.values():
                if merged is not campaign:
                    campaign.calls.update(merged.calls)
                    campaign.alerted = campaign.alerted or merged.alerted
        else:
            campaign = state.new_campaign("same_script", state.calls[members[0]].timestamp)
        for m in members:
            state.script_campaigns[m] = campaign
        weights = [w for m in members for o, w in state.calls[m].script_edges.items()
                   if o in component and m < o]
        stats = SimilarityStats("aligned_hashes", float(min(weights)),
                                float(np.mean(weights)), float(max(weights)))
        alert = self._emit(state, campaign, members, stats)
        if alert is not None:
            alerts.append(alert)
        return alerts

    @staticmethod
    def _emit(state: _TenantState, campaign: _Campaign, members: list[str],
              stats: SimilarityStats) -> CampaignAlert | None:
        """An alert when the campaign is new or gained calls; None otherwise."""
        before = set(campaign.calls)
        for m in members:
            if len(campaign.calls) < _MAX_LISTED_CALLS:
                campaign.calls.setdefault(m, None)
        times = [state.calls[m].timestamp for m in members if m in state.calls]
        campaign.first_seen = min([campaign.first_seen, *times])
        campaign.last_seen = max([campaign.last_seen, *times])
        is_new = not campaign.alerted
        new_calls = tuple(members) if is_new else tuple(m for m in members if m not in before)
        if not is_new and not new_calls:
            return None
        campaign.alerted = True
        return CampaignAlert(campaign.campaign_id, state.tenant, campaign.kind,
                             tuple(campaign.calls), new_calls, len(members),
                             campaign.first_seen, campaign.last_seen, stats, is_new)
