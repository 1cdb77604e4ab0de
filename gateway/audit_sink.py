"""Event sink that appends every record to the tamper-evident audit log.

``emit`` only queues the record (O(1), never touches the disk, safe from any
thread); a background task started by ``start()`` hands queued records to a
worker thread every ``interval`` seconds (sooner once ``max_queue`` are
waiting), which appends them to the :class:`~streamguard.audit.AuditLog` and
commits the batch. A record the log refuses (raw media, not serialisable) is
logged and counted in ``rejected``, never raised into the call.

Records are durable once the batch that holds them is committed: at most
``interval`` seconds of events can be lost in a crash.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

from streamguard.audit import AuditError, AuditLog

log = logging.getLogger("streamguard.gateway.audit")


class AuditSink:
    def __init__(self, audit: AuditLog | str | Path, *, interval: float = 0.2,
                 max_queue: int = 2048) -> None:
        self.log = audit if isinstance(audit, AuditLog) else AuditLog(audit)
        self.interval = interval
        self.max_queue = max_queue
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._write_lock = threading.Lock()
        self.written = 0
        self.rejected = 0

    def emit(self, record: dict[str, Any]) -> None:
        self._queue.append(record)
        if (len(self._queue) >= self.max_queue and self._wake is not None
                and self._loop is not None and self._loop.is_running()):
            self._loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> None:
        """Start the background flusher on the running event loop."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="audit-sink")

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if self._queue:
                await asyncio.to_thread(self.write_pending)

    def write_pending(self) -> int:
        """Append and commit everything queued so far (blocking; runs in a worker thread)."""
        with self._write_lock:
            done = 0
            while self._queue:
                record = self._queue.popleft()
                try:
                    self.log.append(record)
                    done += 1
                except AuditError as exc:
                    self.rejected += 1
                    log.error("audit log refused a %r record: %s",
                              record.get("type", record.get("event", "?")), exc)
            self.log.flush()
            self.written += done
            return done

    async def close(self) -> None:
        """Stop the flusher, write what is still queued and close the log."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.write_pending)
        self.log.close()
