"""Asyncio micro-batcher that groups detector windows across streams.

Batching windows from many calls amortises per-call overhead in ONNX Runtime;
the deadline bounds how long a lone window waits for company. Inference runs
in a small thread pool (ORT releases the GIL), so the event loop carrying the
media never blocks. Under overload the oldest pending window *of the stream
that is over its quota* is dropped: a fresh window supersedes a stale one of
the same call, and one busy call cannot push out the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

RunBatch = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
OnResult = Callable[[npt.NDArray[np.float32], float], None]
OnDrop = Callable[[str], None]


@dataclass(slots=True)
class _Job:
    stream_id: str
    payload: npt.NDArray[np.float32]
    on_result: OnResult
    on_drop: OnDrop
    submitted: float
    dropped: bool = False


@dataclass(slots=True)
class BatcherStats:
    submitted: int = 0
    scored: int = 0
    dropped: int = 0
    batches: int = 0
    failed_batches: int = 0
    pending: int = 0
    batch_size_counts: dict[int, int] = field(default_factory=dict)


class MicroBatcher:
    """Collects windows, runs them ``max_batch`` at a time, hands results back.

    ``submit`` never awaits: it is called from the media path. Results are
    delivered on the event loop through each job's ``on_result(row, latency)``.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch: int = 8,
        max_delay: float = 0.02,
        max_pending_per_stream: int = 2,
        workers: int = 1,
        executor: Executor | None = None,
    ) -> None:
        if max_batch < 1 or max_pending_per_stream < 1 or workers < 1:
            raise ValueError("max_batch, max_pending_per_stream and workers must be >= 1")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.max_pending_per_stream = max_pending_per_stream
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(workers, thread_name_prefix="sg-infer")
        self._slots = asyncio.Semaphore(workers)
        self._queue: deque[_Job] = deque()
        self._per_stream: dict[str, deque[_Job]] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.stats = BatcherStats()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="sg-batcher")

    def submit(self, stream_id: str, payload: npt.NDArray[np.float32],
               on_result: OnResult, on_drop: OnDrop) -> None:
        pending = self._per_stream.setdefault(stream_id, deque())
        if len(pending) >= self.max_pending_per_stream:
            stale = pending.popleft()
            stale.dropped = True
            self.stats.dropped += 1
            self.stats.pending -= 1
            stale.on_drop("overload: a newer window of this stream superseded it")
        job = _Job(stream_id, payload, on_result, on_drop, time.perf_counter())
        pending.append(job)
        self._queue.append(job)
        self.stats.submitted += 1
        self.stats.pending += 1
        self._wakeup.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._own_executor:
            self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._has_live_jobs():
                await self._wait_for_batch()
                await self._slots.acquire()
                batch = self._take_batch()
                if not batch:
                    self._slots.release()
                    break
                task = asyncio.get_running_loop().create_task(self._execute(batch))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    def _has_live_jobs(self) -> bool:
        while self._queue and self._queue[0].dropped:
            self._queue.popleft()
        return bool(self._queue)

    async def _wait_for_batch(self) -> None:
        """Wait until a full batch is queued or the oldest job's deadline passes."""
        deadline = self._queue[0].submitted + self.max_delay
        while self.stats.pending < self.max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Job]:
        batch: list[_Job] = []
        while self._queue and len(batch) < self.max_batch:
            job = self._queue.popleft()
            if job.dropped:
                continue
            stream_jobs = self._per_stream[job.stream_id]
            stream_jobs.remove(job)
            if not stream_jobs:
                del self._per_stream[job.stream_id]
            batch.append(job)
        self.stats.pending -= len(batch)
        return batch

    async def _execute(self, batch: list[_Job]) -> None:
        try:
            stacked = np.stack([job.payload for job in batch])
            loop = asyncio.get_running_loop()
            try:
                rows = await loop.run_in_executor(self._executor, self._run_batch, stacked)
            except Exception as exc:  # a model failure must not kill the loop
                self.stats.failed_batches += 1
                self.stats.dropped += len(batch)
                for job in batch:
                    job.on_drop(f"inference failed: {exc}")
                return
            done = time.perf_counter()
            self.stats.batches += 1
            self.stats.scored += len(batch)
            counts = self.stats.batch_size_counts
            counts[len(batch)] = counts.get(len(batch), 0) + 1
            for job, row in zip(batch, rows, strict=True):
                job.on_result(row, done - job.submitted)
        finally:
            self._slots.release()
