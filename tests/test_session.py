import asyncio

import numpy as np
import pytest

from streamguard import (
    Action,
    ActionKind,
    AudioChunk,
    Guard,
    GuardConfig,
    MediaError,
    Notice,
    SessionClosedError,
    State,
    Verdict,
)
from streamguard.inference import OnnxModel
from streamguard.media import ulaw_encode

from .conftest import voiced


async def play(session, pcm, rate=16000, frame=0.02, pts=True):
    """Feed like a live transport: fixed frames, yielding to the loop, never far ahead."""
    step = int(rate * frame)
    for i in range(0, len(pcm), step):
        session.feed_audio(AudioChunk(session.stream_id, pcm[i:i + step], rate,
                                      pts=i if pts else None))
        if session.backlog > 1:
            await session.drained()
        await asyncio.sleep(0)


async def collect(session):
    return [event async for event in session.events()]


async def test_quiet_voice_is_clear_and_loud_voice_turns_synthetic(level_model):
    async with Guard.from_config(GuardConfig(model_path=level_model)) as guard:
        session = guard.open_session("call-1", tenant="bank", meta={"caller": "x"})
        await play(session, np.concatenate([voiced(6, 0.03), voiced(10, 0.8)]))
        final = await session.close()
        events = await collect(session)
    verdicts = [e for e in events if isinstance(e, Verdict)]
    assert verdicts[-1] is final and final.final
    actions = [e for e in events if isinstance(e, Action)]
    assert ActionKind.HOLD in [a.kind for a in actions] and session.on_hold
    hold = next(a for a in actions if a.kind is ActionKind.HOLD)
    assert hold.state is State.SYNTHETIC and hold.at >= 6.0
    live = verdicts[:-1]
    assert live[0].state is State.CLEAR and live[0].previous_state is State.LISTENING
    assert live[-1].state is State.SYNTHETIC
    changes = [v for v in live if v.changed]
    assert [v.state for v in changes] == [State.CLEAR, State.SUSPECT, State.SYNTHETIC] or \
        [v.state for v in changes] == [State.CLEAR, State.SYNTHETIC]
    for v in live:
        low, high = v.interval
        assert low <= v.probability <= high
        assert v.tenant == "bank" and v.model_version == "test-level-1"
        assert v.end - v.start <= 64600 / 16000 + 1e-6
    assert [v.seq for v in verdicts] == list(range(1, len(verdicts) + 1))
    record = live[0].to_dict()
    assert record["type"] == "verdict" and record["state"] == "clear"
    assert record["changed"] is True and len(record["interval"]) == 2


async def test_narrowband_mulaw_input_is_resampled(level_model):
    async with Guard.from_config(GuardConfig(model_path=level_model)) as guard:
        session = guard.open_session("tel")
        pcm8k = voiced(5, 0.8, rate=8000)
        for i in range(0, len(pcm8k), 160):
            payload = ulaw_encode(pcm8k[i:i + 160])
            session.feed_audio(AudioChunk.from_ulaw("tel", payload, pts=i))
            await session.drained()
        final = await session.close()
    assert final.windows_scored >= 3
    assert final.end == pytest.approx(5.0, abs=0.05)


async def test_gaps_are_filled_and_reported(level_model):
    async with Guard.from_config(GuardConfig(model_path=level_model)) as guard:
        session = guard.open_session("lossy")
        pcm = voiced(3, 0.3)
        session.feed_audio(AudioChunk("lossy", pcm[:16000], 16000, pts=0))
        session.feed_audio(AudioChunk("lossy", pcm[16000:], 16000, pts=16000 + 8000))
        session.feed_audio(AudioChunk("lossy", pcm[:160], 16000, pts=100))  # stale repeat
        session.feed_audio(AudioChunk("lossy", pcm[:16000], 16000, pts=16000 * 60))
        final = await session.close()
        events = await collect(session)
    gaps = [e for e in events if isinstance(e, Notice) and e.kind == "gap"]
    assert len(gaps) == 2 and "filled" in gaps[0].message and "restart" in gaps[1].message
    assert final.end == pytest.approx(61.0, abs=0.05)


async def test_closed_session_refuses_media_and_close_is_idempotent(level_model):
    async with Guard.from_config(GuardConfig(model_path=level_model)) as guard:
        session = guard.open_session("x")
        final = await session.close()
        assert final.state is State.LISTENING and final.probability is None
        assert await session.close() is final
        with pytest.raises(SessionClosedError):
            session.feed_audio(AudioChunk("x", voiced(0.1, 0.3), 16000))
        with pytest.raises(MediaError):
            guard.open_session("y").feed_audio(AudioChunk("other", voiced(0.1, 0.3), 16000))
        with pytest.raises(ValueError, match="already"):
            guard.open_session("y")


async def test_a_bad_stream_does_not_stall_others(level_model):
    async with Guard.from_config(GuardConfig(model_path=level_model)) as guard:
        good = guard.open_session("good")
        bad = guard.open_session("bad")
        with pytest.raises(MediaError):
            bad.feed_audio(AudioChunk.from_pcm16("bad", b"\x00" * 321, 8000))
        await play(good, voiced(4, 0.03))
        final = await good.close()
    assert final.windows_scored >= 3 and final.state is State.CLEAR


async def test_many_concurrent_streams_are_batched(level_model):
    config = GuardConfig(model_path=level_model, max_batch=8, max_delay_ms=50)
    async with Guard.from_config(config) as guard:
        sessions = [guard.open_session(f"s{i}") for i in range(12)]
        pcm = voiced(3, 0.03)
        for i in range(0, len(pcm), 320):
            for s in sessions:
                s.feed_audio(AudioChunk(s.stream_id, pcm[i:i + 320], 16000))
            await asyncio.sleep(0.001)
        finals = [await s.close() for s in sessions]
        stats = guard.batcher.stats
    assert all(f.windows_scored >= 1 for f in finals)
    assert max(stats.batch_size_counts) > 1


def test_model_metadata_errors_are_clear(tmp_path, level_model):
    from streamguard import ModelError

    with pytest.raises(ModelError, match="missing"):
        OnnxModel(tmp_path / "none.onnx")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        OnnxModel(tmp_path / "bad.onnx")
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ModelError, match="lacks"):
        OnnxModel(tmp_path / "bad.onnx")
    (tmp_path / "bad.json").write_text(level_model.with_suffix(".json").read_text())
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load"):
        OnnxModel(tmp_path / "bad.onnx")
