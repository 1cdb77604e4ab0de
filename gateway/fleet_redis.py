"""``RedisFleet``: fleet state shared by several gateway processes through Redis.

Design (``--fleet redis://host:port/db``):

* **Summaries.** Each node appends every call summary it takes (call id,
  tenant, time, voiceprint as 256 little-endian float32, fingerprint hashes
  and times as uint32/int32 bytes, speech seconds) to one Redis stream,
  ``<prefix>:summaries``, trimmed to the longest campaign window (``MINID``)
  and expiring after two windows without writes. Every node reads the whole
  stream (``XREAD``, from the start when it joins) and runs the same
  :class:`~streamguard.campaign.CampaignDetector` over the union of its own
  and the other nodes' calls, so a campaign split across nodes is seen by
  each of them; its own calls are scored locally first, with no round trip.
* **Dedup rule: one name and one report per campaign.** A node that raises
  a campaign asks Redis for its name in one Lua script: if any call of the
  campaign is already registered under a name (``<prefix>:cmp:<tenant>:<kind>:<call>``),
  that name is adopted, else the node's proposal ``<tenant>:<kind>:<hash of
  the smallest call id>`` is registered for all its calls. The same script
  adds the alert's new calls to ``<prefix>:rep:<name>`` (``SADD``); only the
  calls that were not in it are reported. So each call joins each campaign
  in the fleet-wide record exactly once, by whichever node got there first,
  and ``is_new`` is set once per campaign id (only when the set did not exist
  and the node's own detector saw the campaign as new). Sessions of each node still hear
  of the campaign from their own node (once per campaign id per call).
  Replay alerts are named after the replaying call alone.
* **Watchlists** live in the hash ``<prefix>:watchlist`` (field
  ``tenant<US>entry_id``, value JSON with the embedding); each node pushes its
  additions and deletions and re-reads the hash every ``watch_refresh_s``
  and after reconnecting, so a deletion reaches every node within that time.
* **Redis going away.** Calls keep being scored, and campaigns detected,
  with local state (the node's own calls plus what it had read). The gap is
  logged, counted (``gaps_total``, ``gap_seconds_total``) and reported as a
  ``fleet_gap`` notice. Summaries taken meanwhile wait in a bounded buffer
  that keeps the newest summary of each call (a newer summary replaces the
  older one in every detector, so nothing the detectors use is lost), at
  most ``max_buffer`` calls; past that the oldest call's summary is dropped
  and counted (``dropped_summaries_total``). Fleet-wide reports wait too (at
  most ``max_buffer``). On reconnection the buffer is published, reports are
  named and deduplicated, and if Redis lost its data (a changed
  ``<prefix>:epoch``, e.g. a restart without persistence) the newest summary
  of every own call still in the window is published again; a
  ``fleet_resync`` notice says so. During a gap, alerts reach local sessions
  under a provisional name (the proposal above); should another node have
  named the same campaign differently meanwhile, the fleet-wide record
  carries both names (documented limit).

Scripts address keys they compute, so this needs a single Redis (or a
primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from streamguard.campaign import CallSummary, CampaignAlert, CampaignPolicy
from streamguard.fingerprint import Fingerprint
from streamguard.fleet import (
    FleetListener,
    MemoryFleet,
    WatchlistEntry,
    entry_from_json,
    entry_to_json,
)

log = logging.getLogger("streamguard.fleet")

_CLAIM = """
local p, tenant, kind, proposed, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local base = p .. ':cmp:' .. tenant .. ':' .. kind .. ':'
local name = false
for i = 7, 6 + n do
  local v = redis.call('GET', base .. ARGV[i])
  if v then name = v; break end
end
if not name then name = proposed end
for i = 7, 6 + n do
  redis.call('SET', base .. ARGV[i], name, 'NX', 'EX', ttl)
end
local rep = p .. ':rep:' .. name
local existed = redis.call('EXISTS', rep)
local fresh = {}
for i = 7 + n, #ARGV do
  if redis.call('SADD', rep, ARGV[i]) == 1 then table.insert(fresh, ARGV[i]) end
end
redis.call('EXPIRE', rep, ttl)
return {name, existed, fresh}
"""

_SEP = "\x1f"


def encode_summary(summary: CallSummary, node: str) -> dict[str, bytes]:
    """Stream fields for one summary (voiceprint as float32 bytes, fingerprint arrays)."""
    fp = summary.fingerprint
    vp = summary.voiceprint
    return {
        "node": node.encode(), "call": summary.call_id.encode(),
        "tenant": summary.tenant.encode(), "ts": repr(float(summary.timestamp)).encode(),
        "vp": b"" if vp is None else np.asarray(vp, "<f4").reshape(-1).tobytes(),
        "speech": b"" if summary.speech_seconds is None else repr(
            float(summary.speech_seconds)).encode(),
        "fph": b"" if fp is None else np.asarray(fp.hashes, "<u4").tobytes(),
        "fpt": b"" if fp is None else np.asarray(fp.times, "<i4").tobytes(),
        "fpd": b"0" if fp is None else repr(float(fp.duration_s)).encode(),
        "fpn": b"0" if fp is None else str(int(fp.n_peaks)).encode(),
        "fp": b"0" if fp is None else b"1",
    }


def decode_summary(fields: Mapping[bytes, bytes]) -> tuple[str, CallSummary]:
    """(node, summary) from stream fields; raises ValueError on a malformed entry."""
    try:
        vp_raw = fields[b"vp"]
        voiceprint: npt.NDArray[np.float32] | None = (
            np.frombuffer(vp_raw, "<f4").astype(np.float32) if vp_raw else None)
        fingerprint = None
        if fields.get(b"fp") == b"1":
            fingerprint = Fingerprint(np.frombuffer(fields[b"fph"], "<u4").astype(np.uint32),
                                      np.frombuffer(fields[b"fpt"], "<i4").astype(np.int32),
                                      float(fields[b"fpd"]), int(fields[b"fpn"]))
        speech = float(fields[b"speech"]) if fields[b"speech"] else None
        summary = CallSummary(fields[b"call"].decode(), fields[b"tenant"].decode(),
                              float(fields[b"ts"]), voiceprint, fingerprint, speech)
        return fields[b"node"].decode(), summary
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed fleet summary: {exc}") from exc


class RedisFleet:
    """Fleet state shared through Redis; local :class:`MemoryFleet` underneath.

    ``node_id``: this process's name in the stream (default: random);
    ``prefix``: key prefix (several fleets can share one Redis);
    ``max_buffer``: calls whose newest summary is kept while Redis is away;
    ``poll_ms``: longest wait of one ``XREAD`` (latency of remote summaries).
    """

    name = "redis"

    def __init__(self, url: str, *, policies: Mapping[str, CampaignPolicy] | None = None,
                 default: CampaignPolicy | None = None, node_id: str | None = None,
                 prefix: str = "streamguard", max_buffer: int = 10_000, retry_s: float = 0.5,
                 poll_ms: int = 100, watch_refresh_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be >= 1")
        self.url = url
        self.local = MemoryFleet(policies, default)
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self.prefix = prefix
        self.max_buffer = max_buffer
        self.retry_s = retry_s
        self.poll_ms = poll_ms
        self.watch_refresh_s = watch_refresh_s
        self.clock = clock
        windows = [p.window_s for p in (policies or {}).values()]
        self.window_s = max([self.local.policy("").window_s, *windows])
        self._client: Redis = Redis.from_url(url, socket_connect_timeout=1.0,
                                             socket_timeout=2.0, retry=Retry(NoBackoff(), 0))
        self._listeners: list[FleetListener] = []
        self._outbox: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._own: dict[str, tuple[float, dict[str, bytes]]] = {}  # newest own summaries
        self._claims: deque[tuple[CampaignAlert, bool]] = deque()
        self._names: dict[str, str] = {}  # local campaign id -> fleet name
        self._watch_ops: deque[tuple[str, str, str, str | None]] = deque()
        self._last_id = b"0-0"
        self._epoch: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._ever_connected = False
        self._gap_started: float | None = None
        self._next_watch_sync = 0.0
        self.connected = False
        self.counters: dict[str, float] = dict.fromkeys(
            ("gaps_total", "gap_seconds_total", "resyncs_total", "published_total",
             "received_total", "dropped_summaries_total", "dropped_reports_total",
             "malformed_total"), 0.0)

    @property
    def _stream(self) -> str:
        return f"{self.prefix}:summaries"

    # -- FleetState ------------------------------------------------------------------------
    def subscribe(self, listener: FleetListener) -> None:
        self._listeners.append(listener)

    def observe(self, summary: CallSummary) -> list[CampaignAlert]:
        fields = encode_summary(summary, self.node_id)
        self._own[summary.call_id] = (summary.timestamp, fields)
        self._outbox.pop(summary.call_id, None)
        self._outbox[summary.call_id] = fields
        while len(self._outbox) > self.max_buffer:
            self._outbox.popitem(last=False)
            self.counters["dropped_summaries_total"] += 1
        self._prune_own(summary.timestamp)
        alerts = self.local.detect(summary)
        self._handle(alerts)
        return alerts

    def forget(self, call_id: str, tenant: str) -> bool:
        self._own.pop(call_id, None)
        self._outbox.pop(call_id, None)
        return self.local.forget(call_id, tenant)

    def policy(self, tenant: str) -> CampaignPolicy:
        return self.local.policy(tenant)

    def calls_in_window(self, tenant: str) -> int:
        return self.local.calls_in_window(tenant)

    def add_watch(self, entry: WatchlistEntry) -> None:
        self.local.add_watch(entry)
        self._watch_ops.append(("add", entry.tenant, entry.entry_id, entry_to_json(entry)))

    def remove_watch(self, tenant: str, entry_id: str) -> bool:
        self._watch_ops.append(("del", tenant, entry_id, None))
        return self.local.remove_watch(tenant, entry_id)

    def watchlist(self, tenant: str) -> list[WatchlistEntry]:
        return self.local.watchlist(tenant)

    def watch_candidates(self, tenant: str, voiceprint: npt.ArrayLike,
                         k: int = 3) -> list[tuple[WatchlistEntry, float]]:
        return self.local.watch_candidates(tenant, voiceprint, k)

    def stats(self) -> dict[str, float]:
        gap = self.counters["gap_seconds_total"]
        if self._gap_started is not None:
            gap += time.monotonic() - self._gap_started
        return {**self.local.stats(), **self.counters, "gap_seconds_total": gap,
                "connected": 1.0 if self.connected else 0.0,
                "buffered_summaries": float(len(self._outbox)),
                "pending_reports": float(len(self._claims))}

    async def start(self) -> None:
        """Connect and start syncing; an unreachable Redis is a gap, not a failure."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sg-fleet")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            if self.connected:  # publish what is left, briefly
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await asyncio.wait_for(self._flush(), 2.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._client.aclose()

    # -- alerts ----------------------------------------------------------------------------
    def _proposal(self, alert: CampaignAlert) -> str:
        anchor = alert.calls[-1] if alert.kind == "replay" else min(alert.calls)
        digest = hashlib.sha1(anchor.encode()).hexdigest()[:12]
        return f"{alert.tenant}:{alert.kind}:{digest}"

    def _handle(self, alerts: list[CampaignAlert]) -> None:
        for alert in alerts:
            name = self._names.get(alert.campaign_id)
            delivered = False
            if name is not None or not self.connected:
                if name is None:
                    name = self._names[alert.campaign_id] = self._proposal(alert)
                self._deliver(replace(alert, campaign_id=name))
                delivered = True
            self._claims.append((alert, delivered))
            while len(self._claims) > self.max_buffer:
                self._claims.popleft()
                self.counters["dropped_reports_total"] += 1

    def _deliver(self, alert: CampaignAlert) -> None:
        for listener in self._listeners:
            listener.campaign(alert)

    async def _claim(self, alert: CampaignAlert, delivered: bool) -> None:
        proposed = self._names.get(alert.campaign_id) or self._proposal(alert)
        keyed = [alert.calls[-1]] if alert.kind == "replay" else list(alert.calls)
        reported = list(alert.calls if alert.is_new else alert.new_calls)
        ttl = max(1, int(self.local.policy(alert.tenant).window_s * 2))
        raw: list[Any] = await self._client.eval(
            _CLAIM, 0, self.prefix, alert.tenant, alert.kind, proposed, ttl, len(keyed),
            *keyed, *reported)
        name = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        existed = bool(int(raw[1]))
        fresh = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in raw[2])
        self._names[alert.campaign_id] = name
        named = replace(alert, campaign_id=name)
        if not delivered:
            self._deliver(named)
        if fresh:
            # New fleet-wide only if new here too: a Redis that lost its data must not
            # make an old campaign look new again.
            record = replace(named, new_calls=fresh, is_new=alert.is_new and not existed)
            for listener in self._listeners:
                listener.report(record)

    # -- sync loop -------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._closing:
            try:
                if not self.connected:
                    await self._client.ping()
                    await self._reconnected()
                await self._flush()
                await self._read()
                if time.monotonic() >= self._next_watch_sync:
                    await self._sync_watchlists()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                self._lost(exc)
                await asyncio.sleep(self.retry_s)

    def _status(self, kind: str, message: str, detail: dict[str, Any]) -> None:
        for listener in self._listeners:
            listener.status(kind, message, detail)

    def _lost(self, exc: BaseException) -> None:
        if not self.connected and self._gap_started is not None:
            return
        self.connected = False
        self._gap_started = time.monotonic()
        self.counters["gaps_total"] += 1
        # Alerts still waiting for their fleet name reach local sessions now, provisionally.
        for i, (alert, delivered) in enumerate(self._claims):
            if not delivered:
                name = self._names.setdefault(alert.campaign_id, self._proposal(alert))
                self._deliver(replace(alert, campaign_id=name))
                self._claims[i] = (alert, True)
        log.warning("fleet: Redis %s unreachable (%s); scoring with local state, "
                    "buffering summaries", self.url, exc)
        self._status("fleet_gap", f"Redis unreachable: {exc}; calls are scored with local "
                     "state and summaries are buffered",
                     {"node": self.node_id, "url": self.url, "error": str(exc)})

    async def _reconnected(self) -> None:
        epoch = await self._client.get(f"{self.prefix}:epoch")
        if epoch is None:
            await self._client.set(f"{self.prefix}:epoch", uuid.uuid4().hex.encode(), nx=True)
            epoch = await self._client.get(f"{self.prefix}:epoch")
        lost = self._epoch is not None and epoch != self._epoch
        if lost or self._epoch is None:
            # Redis is new to us or lost its data: publish our calls still in the window.
            self._prune_own(self.clock())
            for call_id, (_, fields) in sorted(self._own.items(), key=lambda kv: kv[1][0]):
                self._outbox.pop(call_id, None)
                self._outbox[call_id] = fields
            for entry in (e for t in self.local.watch_tenants() for e in self.local.watchlist(t)):
                self._watch_ops.append(("add", entry.tenant, entry.entry_id,
                                        entry_to_json(entry)))
        if lost:
            self._last_id = b"0-0"
        self._epoch = epoch if isinstance(epoch, bytes) else None
        gap = 0.0
        if self._gap_started is not None:
            gap = time.monotonic() - self._gap_started
            self.counters["gap_seconds_total"] += gap
            self._gap_started = None
        self.connected = True
        self._next_watch_sync = 0.0
        buffered = len(self._outbox)
        if self._ever_connected:
            self.counters["resyncs_total"] += 1
            log.warning("fleet: Redis %s back after %.1f s; re-syncing %d summaries%s",
                        self.url, gap, buffered, " (Redis had lost its data)" if lost else "")
            self._status("fleet_resync", f"Redis back after {gap:.1f} s; {buffered} buffered "
                         "summaries re-synced", {"node": self.node_id, "gap_seconds": gap,
                                                 "summaries": buffered, "redis_lost_data": lost})
        self._ever_connected = True

    async def _flush(self) -> None:
        while self._watch_ops:
            op, tenant, entry_id, payload = self._watch_ops[0]
            field = f"{tenant}{_SEP}{entry_id}"
            if op == "add" and payload is not None:
                await self._client.hset(f"{self.prefix}:watchlist", field, payload)
            else:
                await self._client.hdel(f"{self.prefix}:watchlist", field)
            self._watch_ops.popleft()
        if self._outbox:
            minid = f"{int((self.clock() - self.window_s) * 1000)}-0"
            while self._outbox:
                call_id, fields = next(iter(self._outbox.items()))
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.xadd(self._stream, fields)  # type: ignore[arg-type]
                    pipe.xtrim(self._stream, minid=minid, approximate=True)
                    pipe.expire(self._stream, int(self.window_s * 2))
                    await pipe.execute()
                if self._outbox.get(call_id) is fields:
                    del self._outbox[call_id]
                self.counters["published_total"] += 1
        while self._claims:
            alert, delivered = self._claims[0]
            await self._claim(alert, delivered)
            self._claims.popleft()

    async def _read(self) -> None:
        reply: Any = (
            await self._client.xread({self._stream: self._last_id}, count=500,
                                     block=self.poll_ms))
        for _, entries in reply or []:
            for entry_id, fields in entries:
                self._last_id = entry_id
                try:
                    node, summary = decode_summary(fields)
                except ValueError as exc:
                    self.counters["malformed_total"] += 1
                    log.warning("fleet: skipping %r: %s", entry_id, exc)
                    continue
                if node == self.node_id:
                    continue
                self.counters["received_total"] += 1
                try:
                    alerts = self.local.detect(summary)
                except ValueError as exc:
                    self.counters["malformed_total"] += 1
                    log.warning("fleet: summary of %s rejected: %s", summary.call_id, exc)
                    continue
                self._handle(alerts)

    async def _sync_watchlists(self) -> None:
        self._next_watch_sync = time.monotonic() + self.watch_refresh_s
        stored = await self._client.hgetall(f"{self.prefix}:watchlist")
        remote: dict[tuple[str, str], WatchlistEntry] = {}
        for raw in stored.values():
            try:
                entry = entry_from_json(raw)
            except (ValueError, KeyError) as exc:
                log.warning("fleet: malformed watchlist entry: %s", exc)
                continue
            remote[(entry.tenant, entry.entry_id)] = entry
        for tenant in self.local.watch_tenants():
            for entry in self.local.watchlist(tenant):
                if (tenant, entry.entry_id) not in remote:
                    self.local.remove_watch(tenant, entry.entry_id)
        for (tenant, entry_id), entry in remote.items():
            known = {e.entry_id: e for e in self.local.watchlist(tenant)}.get(entry_id)
            if known is None or known.created_at != entry.created_at:
                self.local.add_watch(entry)

    def _prune_own(self, now: float) -> None:
        cutoff = now - self.window_s
        for call_id in [c for c, (t, _) in self._own.items() if t < cutoff]:
            del self._own[call_id]
