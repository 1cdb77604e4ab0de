"""Fleet state: what calls share across a gateway (and, with Redis, across gateways).

Bulk deception is only visible across calls: one synthetic voice or one
recording played into many lines. Every call's caller leg keeps a running
voiceprint and an audio fingerprint (see :class:`streamguard.session.Session`)
and hands a :class:`~streamguard.campaign.CallSummary` to the fleet every
``FleetConfig.summary_every_s`` seconds of speech and at close. The fleet
runs :class:`~streamguard.campaign.CampaignDetector` over the calls of each
tenant's window and tells its listener about campaigns; the Guard delivers
them to the live sessions of the calls involved (a ``campaign`` event) and,
once per campaign update, to the fleet-wide sink.

Watchlists: a tenant's list of voiceprints of *known fraud voices*. Unlike
enrolled customers (:mod:`streamguard.enrolment`), the people behind these
voices have not consented; keeping them is allowed as a tenant's own
fraud-prevention measure (legitimate interest in preventing fraud against
its customers), limited to that purpose, scoped to the tenant that recorded
the fraud, and every entry can be listed and deleted. No audio is kept.

Threshold (``DEFAULT_WATCHLIST_THRESHOLD`` = 0.82, cosine of the call's
running voiceprint to the entry, GE2E): the same bar as campaign clustering
(:mod:`streamguard.campaign`), measured on the shared LibriSpeech speakers
through the phone channel: a call against a voiceprint averaged over several
recordings of the same speaker scored ≥ 0.839, of another speaker ≤ 0.819.
An entry built from one short clip behaves like one call (same speaker
5th percentile 0.799), so enrol entries from ≥ 10 s of audio. A match also
needs ``watchlist_min_speech_s`` of speech, since fewer windows scatter more.

This module opens no sockets: :class:`MemoryFleet` is the embedded default;
``gateway.fleet_redis.RedisFleet`` shares the same state through Redis.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamguard.campaign import CallSummary, CampaignAlert, CampaignDetector, CampaignPolicy
from streamguard.enrolment import open_erasable_db
from streamguard.errors import StreamGuardError
from streamguard.events import CampaignEvent, Event, Notice
from streamguard.inference.batcher import MicroBatcher
from streamguard.speaker.encoder import EMBEDDING_DIM, MODEL_NAME
from streamguard.voiceprint_index import VoiceprintIndex

__all__ = [
    "DEFAULT_WATCHLIST_THRESHOLD",
    "FleetConfig",
    "FleetLink",
    "FleetListener",
    "FleetState",
    "MemoryFleet",
    "SQLiteWatchlistStore",
    "WatchlistEntry",
]

log = logging.getLogger("streamguard.fleet")

DEFAULT_WATCHLIST_THRESHOLD = 0.82
Float32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """How sessions feed the fleet.

    ``first_summary_s``: speech before a call's first summary (three 1.6 s
    partials; the detector ignores voiceprints under ``CampaignPolicy.min_speech_s``
    = 3 s anyway); ``summary_every_s``: speech between later summaries (and one
    at close); ``fingerprint_window_s``: a summary carries the fingerprint of the
    last this-many seconds of the call (about 115 hashes a second, so a summary
    stays under ~110 KiB however long the call; matches found earlier are kept
    by the detector). ``watchlist_threshold`` / ``watchlist_min_speech_s``: see
    the module docstring.
    """

    first_summary_s: float = 4.8
    summary_every_s: float = 10.0
    fingerprint_window_s: float = 120.0
    watchlist_threshold: float = DEFAULT_WATCHLIST_THRESHOLD
    watchlist_min_speech_s: float = 3.2
    max_pending: int = 2


@dataclass(frozen=True, slots=True)
class WatchlistEntry:
    """One known fraud voice of one tenant (embedding: unit-length GE2E voiceprint)."""

    tenant: str
    entry_id: str
    label: str
    embedding: Float32
    created_at: datetime
    model: str = MODEL_NAME
    speech_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Everything except the embedding (for listings and the audit log)."""
        return {"tenant": self.tenant, "entry_id": self.entry_id, "label": self.label,
                "created_at": self.created_at.isoformat(), "model": self.model,
                "speech_seconds": round(self.speech_seconds, 2)}


class FleetListener(Protocol):
    """Who hears from the fleet (the Guard).

    ``campaign``: deliver to this process's live sessions of the calls involved;
    ``report``: the fleet-wide record, called once per campaign update across
    all nodes (see the dedup rule of the backend); ``status``: connection
    changes (``fleet_gap``, ``fleet_resync``) worth an operator notice.
    """

    def campaign(self, alert: CampaignAlert) -> None: ...

    def report(self, alert: CampaignAlert) -> None: ...

    def status(self, kind: str, message: str, detail: dict[str, Any]) -> None: ...


class FleetState(Protocol):
    """Cross-call state: campaign windows (voiceprints, fingerprints) and watchlists."""

    name: str

    def subscribe(self, listener: FleetListener) -> None: ...

    def observe(self, summary: CallSummary) -> list[CampaignAlert]:
        """Record a call's (newer) summary; returns the alerts it raised here and now
        (they also reach the listener, possibly after a backend round trip)."""
        ...

    def forget(self, call_id: str, tenant: str) -> bool: ...

    def policy(self, tenant: str) -> CampaignPolicy:
        """The tenant's campaign rules, its window (``window_s``) among them."""
        ...

    def calls_in_window(self, tenant: str) -> int: ...

    def add_watch(self, entry: WatchlistEntry) -> None: ...

    def remove_watch(self, tenant: str, entry_id: str) -> bool: ...

    def watchlist(self, tenant: str) -> list[WatchlistEntry]: ...

    def watch_candidates(self, tenant: str, voiceprint: npt.ArrayLike,
                         k: int = 3) -> list[tuple[WatchlistEntry, float]]: ...

    def stats(self) -> dict[str, float]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class MemoryFleet:
    """The embedded default: one process's calls, in memory.

    Wraps :class:`CampaignDetector` (per-tenant windows of voiceprints and
    fingerprints) and one faiss :class:`VoiceprintIndex` per tenant's
    watchlist. Alerts reach listeners synchronously, inside :meth:`observe`.
    """

    name = "memory"

    def __init__(self, policies: Mapping[str, CampaignPolicy] | None = None,
                 default: CampaignPolicy | None = None) -> None:
        self.detector = CampaignDetector(policies, default)
        self._listeners: list[FleetListener] = []
        self._indexes: dict[str, VoiceprintIndex] = {}
        self._entries: dict[str, dict[str, WatchlistEntry]] = {}
        self.summaries = 0

    def subscribe(self, listener: FleetListener) -> None:
        self._listeners.append(listener)

    # -- campaigns -------------------------------------------------------------------------
    def observe(self, summary: CallSummary) -> list[CampaignAlert]:
        alerts = self.detect(summary)
        for alert in alerts:
            self.publish(alert, report=True)
        return alerts

    def detect(self, summary: CallSummary) -> list[CampaignAlert]:
        """Run detection only (no listeners): for backends that name alerts first."""
        self.summaries += 1
        return self.detector.observe(summary)

    def publish(self, alert: CampaignAlert, *, report: bool) -> None:
        for listener in self._listeners:
            listener.campaign(alert)
            if report:
                listener.report(alert)

    def status(self, kind: str, message: str, detail: dict[str, Any]) -> None:
        for listener in self._listeners:
            listener.status(kind, message, detail)

    def forget(self, call_id: str, tenant: str) -> bool:
        return self.detector.forget(call_id, tenant)

    def policy(self, tenant: str) -> CampaignPolicy:
        return self.detector.policy(tenant)

    def calls_in_window(self, tenant: str) -> int:
        return self.detector.calls_in_window(tenant)

    # -- watchlists ------------------------------------------------------------------------
    def add_watch(self, entry: WatchlistEntry) -> None:
        vector = np.asarray(entry.embedding, dtype=np.float32).reshape(-1)
        if vector.shape != (EMBEDDING_DIM,):
            raise ValueError(f"watchlist voiceprint must be {EMBEDDING_DIM}-d")
        index = self._indexes.get(entry.tenant)
        if index is None:
            index = self._indexes[entry.tenant] = VoiceprintIndex(EMBEDDING_DIM)
        index.add(entry.entry_id, vector)
        self._entries.setdefault(entry.tenant, {})[entry.entry_id] = entry

    def remove_watch(self, tenant: str, entry_id: str) -> bool:
        index = self._indexes.get(tenant)
        self._entries.get(tenant, {}).pop(entry_id, None)
        return index is not None and index.remove(entry_id)

    def watchlist(self, tenant: str) -> list[WatchlistEntry]:
        return sorted(self._entries.get(tenant, {}).values(), key=lambda e: e.entry_id)

    def watch_tenants(self) -> list[str]:
        return sorted(t for t, entries in self._entries.items() if entries)

    def watch_candidates(self, tenant: str, voiceprint: npt.ArrayLike,
                         k: int = 3) -> list[tuple[WatchlistEntry, float]]:
        """The tenant's ``k`` nearest watchlist entries with their cosine, best first."""
        index = self._indexes.get(tenant)
        if index is None or len(index) == 0:
            return []
        entries = self._entries[tenant]
        return [(entries[i], sim) for i, sim in index.search(voiceprint, k) if i in entries]

    def stats(self) -> dict[str, float]:
        return {"summaries_total": float(self.summaries),
                "watchlist_entries": float(sum(len(e) for e in self._entries.values()))}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class SQLiteWatchlistStore:
    """Watchlist entries in a SQLite file, one row per (tenant, entry id).

    Same pattern as :class:`~streamguard.enrolment.SQLiteEnrolmentStore`:
    ``secure_delete`` so a removed voiceprint does not linger in free pages,
    rollback journal (not WAL). Only the embedding is kept, never audio.
    """

    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS watchlist (
            tenant TEXT NOT NULL,
            entry_id TEXT NOT NULL,
            label TEXT NOT NULL,
            embedding BLOB NOT NULL,
            created_at TEXT NOT NULL,
            model TEXT NOT NULL,
            speech_seconds REAL NOT NULL,
            PRIMARY KEY (tenant, entry_id)
        );
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_erasable_db(self.path, self._SCHEMA, "watchlist store")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SQLiteWatchlistStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, entry: WatchlistEntry) -> None:
        """Store or replace an entry."""
        embedding = np.asarray(entry.embedding, dtype="<f4").reshape(-1)
        if embedding.shape != (EMBEDDING_DIM,):
            raise ValueError(f"watchlist voiceprint must be {EMBEDDING_DIM}-d")
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO watchlist VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (entry.tenant, entry.entry_id, entry.label, embedding.tobytes(),
                              entry.created_at.isoformat(), entry.model, entry.speech_seconds))

    def entries(self, tenant: str | None = None) -> list[WatchlistEntry]:
        query = ("SELECT tenant, entry_id, label, embedding, created_at, model, speech_seconds "
                 "FROM watchlist")
        params: tuple[str, ...] = ()
        if tenant is not None:
            query, params = query + " WHERE tenant = ?", (tenant,)
        out = []
        for t, eid, label, blob, created, model, seconds in self._db.execute(
                query + " ORDER BY tenant, entry_id", params):
            if len(blob) != EMBEDDING_DIM * 4:
                raise StreamGuardError(f"watchlist store {self.path}: entry {t}/{eid} is corrupt")
            out.append(WatchlistEntry(str(t), str(eid), str(label),
                                      np.frombuffer(blob, dtype="<f4").astype(np.float32),
                                      datetime.fromisoformat(created), str(model),
                                      float(seconds)))
        return out

    def remove(self, tenant: str, entry_id: str) -> bool:
        with self._db:
            cursor = self._db.execute("DELETE FROM watchlist WHERE tenant = ? AND entry_id = ?",
                                      (tenant, entry_id))
        return int(cursor.rowcount) > 0


def entry_to_json(entry: WatchlistEntry) -> str:
    """A watchlist entry as JSON with the embedding as a list (for Redis and files)."""
    return json.dumps({**entry.summary(),
                       "embedding": np.asarray(entry.embedding, np.float32).tolist()})


def entry_from_json(text: str | bytes) -> WatchlistEntry:
    data = json.loads(text)
    return WatchlistEntry(str(data["tenant"]), str(data["entry_id"]), str(data["label"]),
                          np.asarray(data["embedding"], dtype=np.float32),
                          datetime.fromisoformat(str(data["created_at"])), str(data["model"]),
                          float(data.get("speech_seconds", 0.0)))


def utcnow() -> datetime:
    return datetime.now(UTC)


class CampaignParticipant(Protocol):
    """A live session that can be told it is part of a campaign."""

    def on_campaign(self, alert: CampaignAlert) -> None: ...


class FleetLink:
    """The Guard's side of the fleet: routes alerts to live sessions and sinks.

    Sessions register their call id while open. A campaign alert goes to
    every registered session of ``alert.calls`` when the campaign is new to
    this process, else to those of ``alert.new_calls`` (the others already
    know). ``sinks`` receive the fleet-wide records: one ``CampaignEvent``
    with ``stream_id=None`` per :meth:`FleetListener.report`, and ``Notice``
    records (``stream_id="fleet"``) for gaps and re-syncs.
    """

    def __init__(self, fleet: FleetState, batcher: MicroBatcher, config: FleetConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.fleet = fleet
        self.batcher = batcher
        self.config = config
        self.clock = clock
        self.sinks: list[Callable[[Event], None]] = []
        self._sessions: dict[str, CampaignParticipant] = {}
        fleet.subscribe(self)

    def register(self, call_id: str, session: CampaignParticipant) -> None:
        self._sessions[call_id] = session

    def unregister(self, call_id: str, session: CampaignParticipant) -> None:
        if self._sessions.get(call_id) is session:
            del self._sessions[call_id]

    def observe(self, summary: CallSummary) -> None:
        """Hand a summary to the fleet; a failing backend is logged, never raised into
        the media path (scoring goes on without fleet state)."""
        try:
            self.fleet.observe(summary)
        except Exception:
            log.exception("fleet %s could not take the summary of %s", self.fleet.name,
                          summary.call_id)

    # -- FleetListener ---------------------------------------------------------------------
    def campaign(self, alert: CampaignAlert) -> None:
        for call in alert.calls if alert.is_new else alert.new_calls:
            session = self._sessions.get(call)
            if session is not None:
                session.on_campaign(alert)

    def report(self, alert: CampaignAlert) -> None:
        event = CampaignEvent(None, alert.tenant, alert.campaign_id, alert.kind, alert.calls,
                              alert.new_calls, alert.calls_in_window, alert.similarity.as_dict(),
                              alert.is_new, alert.first_seen, alert.last_seen, self.clock())
        self._emit(event)

    def status(self, kind: str, message: str, detail: dict[str, Any]) -> None:
        self._emit(Notice("fleet", kind, message, self.clock(), detail))

    def _emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:
                log.exception("fleet sink failed")
