"""Live bulk-deception detection and watchlists with the embedded (in-memory) fleet."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest

from streamguard import Action, ActionKind, Guard, GuardConfig
from streamguard.events import CampaignEvent, WatchlistMatch
from streamguard.fleet import MemoryFleet, SQLiteWatchlistStore, WatchlistEntry
from streamguard.media import decode_file
from streamguard.speaker import SpeakerEncoder

from .conftest import SPEECH
from .test_session import collect, play

pytestmark = pytest.mark.skipif(not SPEECH.exists(), reason="shared speech corpus missing")


def clip(name: str) -> np.ndarray:
    return decode_file(SPEECH / name).pcm


def piper(i: int) -> np.ndarray:
    """About 9 s of the Piper voice: two distinct sentences (no shared recording)."""
    return np.concatenate([clip(f"spoof_piper/piper_{2 * i:03d}.flac"),
                           clip(f"spoof_piper/piper_{2 * i + 1:03d}.flac")])


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder.load()


async def run_calls(guard: Guard, calls: dict[str, np.ndarray], tenant: str = "bank"):
    sessions = {cid: guard.open_session(cid, tenant=tenant, meta={"leg": "caller"})
                for cid in calls}
    gathered = {cid: asyncio.create_task(collect(s)) for cid, s in sessions.items()}
    await asyncio.gather(*(play(sessions[cid], pcm) for cid, pcm in calls.items()))
    for session in sessions.values():
        await session.close()
    return {cid: await task for cid, task in gathered.items()}


async def test_six_calls_with_one_voice_raise_one_campaign_to_the_live_sessions(
        level_model, encoder):
    fleet = MemoryFleet()
    guard = Guard.from_config(GuardConfig(model_path=level_model), fleet=fleet,
                              speaker_encoder=encoder)
    fleet_records = []
    assert guard.fleet is not None
    guard.fleet.sinks.append(fleet_records.append)
    calls = {f"call-{i}": piper(i) for i in range(6)}
    calls["genuine"] = clip("bonafide/1688-142285-0003.flac")
    async with guard:
        events = await run_calls(guard, calls)
    reported = [r for r in fleet_records if isinstance(r, CampaignEvent)]
    new = [r for r in reported if r.is_new]
    assert len(new) == 1 and new[0].kind == "same_voice" and new[0].stream_id is None
    campaign_id = new[0].campaign_id
    assert all(r.campaign_id == campaign_id for r in reported)
    assert set(reported[-1].calls) == {f"call-{i}" for i in range(6)}
    stats = new[0].similarity
    assert stats["measure"] == "cosine_to_centroid" and 0.82 <= stats["min"] <= stats["max"]
    for i in range(6):
        got = [e for e in events[f"call-{i}"] if isinstance(e, CampaignEvent)]
        # Each call hears of the campaign once, while it is still live (before its final).
        assert [e.campaign_id for e in got] == [campaign_id], f"call-{i}"
        assert events[f"call-{i}"].index(got[0]) < len(events[f"call-{i}"]) - 1
        rules = {a.rule for a in events[f"call-{i}"] if isinstance(a, Action)}
        assert "notify-on-campaign" in rules
    assert not [e for e in events["genuine"] if isinstance(e, CampaignEvent)]
    assert fleet.calls_in_window("bank") == 7


async def test_watchlisted_voice_is_flagged_and_other_voices_are_not(level_model, encoder,
                                                                     tmp_path):
    reference = np.concatenate([clip(f"spoof_piper/piper_{i:03d}.flac") for i in (40, 41, 42)])
    utterance = encoder.embed_utterance(reference.astype(np.float32) / 32768.0)
    db = tmp_path / "watchlist.sqlite3"
    with SQLiteWatchlistStore(db) as store:
        store.add(WatchlistEntry("bank", "fraud-7", "piper scam voice", utterance.embedding,
                                 datetime.now(UTC), speech_seconds=utterance.speech_seconds))
        entries = store.entries("bank")
    fleet = MemoryFleet()
    for entry in entries:
        fleet.add_watch(entry)
    guard = Guard.from_config(GuardConfig(model_path=level_model), fleet=fleet,
                              speaker_encoder=encoder)
    calls = {"scam": piper(1), "customer": clip("bonafide/1688-142285-0003.flac"),
             "other-tenant": piper(2)}
    async with guard:
        events = await run_calls(guard, {k: v for k, v in calls.items() if k != "other-tenant"})
        other = await run_calls(guard, {"other-tenant": calls["other-tenant"]}, tenant="shop")
    hits = [e for e in events["scam"] if isinstance(e, WatchlistMatch)]
    assert len(hits) == 1 and hits[0].entry_id == "fraud-7"
    sim = hits[0].similarity
    assert sim["low"] <= sim["value"] <= sim["high"] and sim["value"] >= hits[0].threshold
    kinds = [a.kind for a in events["scam"] if isinstance(a, Action)
             and a.rule == "step-up-on-watchlist"]
    assert kinds == [ActionKind.WARN, ActionKind.STEP_UP]
    assert not [e for e in events["customer"] if isinstance(e, WatchlistMatch)]
    assert not [e for e in other["other-tenant"] if isinstance(e, WatchlistMatch)]
    # Deletable: once removed, the same voice no longer matches.
    assert fleet.remove_watch("bank", "fraud-7") and fleet.watchlist("bank") == []
    with SQLiteWatchlistStore(db) as store:
        assert store.remove("bank", "fraud-7") and store.entries() == []


async def test_without_a_fleet_sessions_keep_no_voiceprint(level_model):
    async with Guard.from_config(GuardConfig(model_path=level_model)) as guard:
        assert guard.fleet is None and guard.identity is None
        session = guard.open_session("plain")
        await play(session, clip("spoof_piper/piper_001.flac"))
        await session.close()
        events = await collect(session)
    assert not [e for e in events if isinstance(e, CampaignEvent | WatchlistMatch)]


def test_watchlist_cli_adds_lists_refuses_and_removes(tmp_path, monkeypatch, capsys):
    import json

    from gateway.cli import main

    monkeypatch.setenv("STREAMGUARD_DATA_DIR", str(tmp_path))
    files = [str(SPEECH / f"spoof_piper/piper_{i:03d}.flac") for i in (40, 41)]
    assert main(["watchlist", "add", "bank", "fraud-1", *files, "--label", "case 1"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["entry_id"] == "fraud-1" and "embedding" not in added
    silent = tmp_path / "silent.wav"
    import soundfile

    soundfile.write(silent, np.zeros(16000 * 4, np.int16), 16000)
    assert main(["watchlist", "add", "bank", "x", str(silent), "--label", "x"]) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[0])["refused"] == "silent"
    assert main(["watchlist", "list", "bank"]) == 0
    assert [json.loads(x)["entry_id"] for x in capsys.readouterr().out.splitlines()] == [
        "fraud-1"]
    assert main(["watchlist", "remove", "bank", "fraud-1"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] is True
    assert main(["watchlist", "list"]) == 0 and capsys.readouterr().out == ""
    assert main(["audit", "verify", "--db", str(tmp_path / "audit.sqlite3")]) == 0
