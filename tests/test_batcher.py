import asyncio
import threading

import numpy as np
import pytest

from streamguard.inference.batcher import MicroBatcher


def echo(batch):
    return batch[:, :2] * 2


class Recorder:
    def __init__(self):
        self.results = []
        self.drops = []

    def result(self, tag):
        return lambda row, latency: self.results.append((tag, row.tolist(), latency))

    def drop(self, tag):
        return lambda reason: self.drops.append((tag, reason))


def payload(value):
    return np.full(4, value, dtype=np.float32)


async def test_groups_windows_from_many_streams_into_one_batch():
    sizes = []

    def run(batch):
        sizes.append(len(batch))
        return echo(batch)

    batcher = MicroBatcher(run, max_batch=4, max_delay=0.5)
    batcher.start()
    rec = Recorder()
    for i in range(4):
        batcher.submit(f"s{i}", payload(i), rec.result(i), rec.drop(i))
    for _ in range(100):
        if len(rec.results) == 4:
            break
        await asyncio.sleep(0.01)
    await batcher.close()
    assert sizes == [4]  # full batch flushed without waiting for the 0.5 s deadline
    assert sorted(tag for tag, *_ in rec.results) == [0, 1, 2, 3]
    assert all(row == [2 * tag, 2 * tag] for tag, row, _ in rec.results)


async def test_deadline_flushes_a_lone_window():
    batcher = MicroBatcher(echo, max_batch=8, max_delay=0.03)
    batcher.start()
    rec = Recorder()
    batcher.submit("a", payload(1), rec.result("a"), rec.drop("a"))
    await asyncio.sleep(0.2)
    await batcher.close()
    assert len(rec.results) == 1
    assert rec.results[0][2] >= 0.025


async def test_overload_drops_oldest_window_of_that_stream_only():
    gate = threading.Event()

    def slow(batch):
        gate.wait(5)
        return echo(batch)

    batcher = MicroBatcher(slow, max_batch=1, max_delay=0.0, max_pending_per_stream=2)
    batcher.start()
    rec = Recorder()
    batcher.submit("busy", payload(0), rec.result(0), rec.drop(0))
    await asyncio.sleep(0.05)  # job 0 is now running and blocks the single worker
    for i in range(1, 5):
        batcher.submit("busy", payload(i), rec.result(i), rec.drop(i))
    batcher.submit("calm", payload(9), rec.result(9), rec.drop(9))
    assert [tag for tag, _ in rec.drops] == [1, 2]
    assert "overload" in rec.drops[0][1]
    gate.set()
    for _ in range(200):
        if len(rec.results) == 4:
            break
        await asyncio.sleep(0.01)
    await batcher.close()
    assert sorted(tag for tag, *_ in rec.results) == [0, 3, 4, 9]
    assert batcher.stats.dropped == 2 and batcher.stats.scored == 4


async def test_model_failure_drops_the_batch_and_the_loop_survives():
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return echo(batch)

    batcher = MicroBatcher(flaky, max_batch=1, max_delay=0.0)
    batcher.start()
    rec = Recorder()
    batcher.submit("a", payload(1), rec.result(1), rec.drop(1))
    await asyncio.sleep(0.1)
    batcher.submit("a", payload(2), rec.result(2), rec.drop(2))
    await asyncio.sleep(0.1)
    await batcher.close()
    assert rec.drops == [(1, "inference failed: boom")]
    assert [tag for tag, *_ in rec.results] == [2]
    assert batcher.stats.failed_batches == 1


def test_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        MicroBatcher(echo, max_batch=0)
