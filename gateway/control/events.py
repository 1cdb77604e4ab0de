"""Live events with the audit log's sequence numbers, fanned out without blocking.

The hub tails the audit log (every record the gateway emits lands there via
``AuditSink``): each entry becomes an event ``{"seq", "ts", "tenant", "type",
"record"}``. Because live events and replayed ones come from the same log,
a subscriber that reconnects with ``since=SEQ`` gets exactly the entries after
SEQ (from the log), then the live ones, with no gap and no duplicate.

Fan-out never blocks the gateway: the hub only ``put_nowait``s into each
subscriber's bounded queue; a subscriber whose queue is full is dropped (its
socket is closed with :data:`CLOSE_SLOW`) and may resume with ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamguard.audit import AuditEntry, AuditLog

log = logging.getLogger("streamguard.gateway.control")

CLOSE_SLOW = 4008  # subscriber too slow: queue overflowed; reconnect with ?since=<last seq>


class TenantResolver:
    """Tenant of an entry; records without one (``call_ended``) inherit their call's."""

    def __init__(self, audit: AuditLog, max_calls: int = 100_000) -> None:
        self._audit = audit
        self._calls: dict[str, str] = {}
        self._max = max_calls

    def learn(self, entry: AuditEntry) -> None:
        call_id = entry.record.get("call_id")
        if entry.tenant and isinstance(call_id, str):
            if len(self._calls) >= self._max:
                self._calls.clear()
            self._calls.setdefault(call_id, entry.tenant)

    def tenant(self, entry: AuditEntry) -> str:
        if entry.tenant:
            return entry.tenant
        call_id = entry.record.get("call_id")
        if not isinstance(call_id, str):
            return ""
        if call_id not in self._calls:  # resumed past the call's start: look it up once
            for started in self._audit.entries(types=["call_started"]):
                if started.record.get("call_id") == call_id:
                    self._calls[call_id] = started.tenant
                    break
            else:
                return ""
        return self._calls[call_id]

    def event(self, entry: AuditEntry) -> dict[str, Any]:
        self.learn(entry)
        return {"seq": entry.seq, "ts": entry.ts, "tenant": self.tenant(entry),
                "type": entry.type, "record": entry.record}


def session_of(event: dict[str, Any]) -> str | None:
    record = event["record"]
    call_id = record.get("call_id")
    if isinstance(call_id, str):
        return call_id
    stream = record.get("stream_id")
    return stream.split(":", 1)[0] if isinstance(stream, str) else None


@dataclass(eq=False)
class Subscriber:
    tenant: str | None            # None: every tenant (super admin)
    session: str | None
    queue: asyncio.Queue[str] = field(
        default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: bool = False
    overflow: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, event: dict[str, Any]) -> bool:
        if self.tenant is not None and (event["tenant"] != self.tenant or not self.tenant):
            return False
        return self.session is None or session_of(event) == self.session

    def offer(self, event: dict[str, Any], text: str) -> None:
        """Queue ``text`` (the event's JSON, serialised once for every subscriber)."""
        if self.dropped or not self.wants(event):
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped = True
            self.overflow.set()


class EventHub:
    def __init__(self, audit: AuditLog, *, poll_s: float = 0.05, page: int = 2000,
                 queue_size: int = 1000) -> None:
        self.audit = audit
        self.resolver = TenantResolver(audit)
        self.poll_s = poll_s
        self.page = page
        self.queue_size = queue_size
        self.last = 0
        self.subscribers: set[Subscriber] = set()
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.published = 0
        self.dropped_subscribers = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        head = self.audit.head()
        self.last = head.seq if head else 0
        self._task = asyncio.get_running_loop().create_task(self._run(), name="event-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _read(self, since: int) -> list[dict[str, Any]]:
        out = []
        for entry in self.audit.entries(since_seq=since):
            out.append(self.resolver.event(entry))
            if len(out) >= self.page:
                break
        return out

    async def _run(self) -> None:
        while True:
            try:
                events = await asyncio.to_thread(self._read, self.last)
            except Exception as exc:  # a closed or busy log: try again
                log.warning("event hub read failed: %s", exc)
                events = []
            for event in events:
                self.last = event["seq"]
                self.publish(event)
            if len(events) < self.page:
                await asyncio.sleep(self.poll_s)

    def publish(self, event: dict[str, Any]) -> None:
        self.published += 1
        text = json.dumps(event, default=str) if self.subscribers else ""
        for sub in list(self.subscribers):
            sub.offer(event, text)
            if sub.dropped:
                self.subscribers.discard(sub)
                self.dropped_subscribers += 1
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as exc:
                log.warning("event listener failed: %s", exc)

    def subscribe(self, tenant: str | None, session: str | None) -> tuple[Subscriber, int]:
        """A registered subscriber and the seq up to which it must replay from the log."""
        sub = Subscriber(tenant, session, asyncio.Queue(maxsize=self.queue_size))
        self.subscribers.add(sub)
        return sub, self.last

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def replay(self, sub: Subscriber, since: int, until: int) -> list[dict[str, Any]]:
        """Logged events in (since, until] the subscriber wants (blocking; use a thread)."""
        out = []
        for entry in self.audit.entries(tenant=None, since_seq=since):
            if entry.seq > until:
                break
            event = self.resolver.event(entry)
            if sub.wants(event):
                out.append(event)
        return out
