"""Tamper-evident audit log: chain, tamper detection, prune checkpoints, media refusal, CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gateway.audit_sink import AuditSink
from gateway.cli import main
from streamguard.audit import (
    AuditError,
    AuditLog,
    Head,
    RawMediaError,
    canonical_json,
    chain_hash,
    default_path,
    genesis_hash,
)
from streamguard.events import Action, ActionKind, Notice, State, Verdict
from streamguard.policy import DEFAULT_POLICY


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def verdict(i: int, tenant: str = "acme", state: State = State.CLEAR) -> dict:
    return Verdict(f"call-{i % 3}", tenant, i, i, i + 4.04, 0.1, 0.2, 0.2, (0.1, 0.3), state,
                   State.LISTENING, i + 1, "voice_clone", "vc-cnn-1.0.0").to_dict()


@pytest.fixture
def log(tmp_path):
    log = AuditLog(tmp_path / "audit.sqlite3", clock=Clock())
    for i in range(10):
        log.append(verdict(i, tenant="acme" if i % 2 else "globex"))
    log.flush()
    yield log
    log.close()


def tamper(log: AuditLog, sql: str, *args) -> None:
    db = sqlite3.connect(log.path)
    db.execute(sql, args)
    db.commit()
    db.close()


def test_chain_is_the_documented_formula(log):
    rows = sqlite3.connect(log.path).execute(
        "SELECT seq, body, prev_hash, hash FROM entries ORDER BY seq").fetchall()
    prev = genesis_hash(log.log_id)
    for seq, body, prev_hex, digest in rows:
        assert prev_hex == prev.hex()
        assert body.encode() == canonical_json(json.loads(body))  # canonical form stored
        prev = chain_hash(prev, seq, body.encode())
        assert prev.hex() == digest
    assert log.head() == Head(10, prev.hex())


def test_append_verify_and_read_back(log):
    result = log.verify()
    assert result.ok and result.checked == 10 and result.head.seq == 10
    assert [e.seq for e in log.entries(tenant="acme")] == [2, 4, 6, 8, 10]
    assert [e.seq for e in log.entries(since_seq=7)] == [8, 9, 10]
    assert list(log.entries(types=["action"])) == []
    first = next(log.entries())
    assert first.record["state"] == "clear" and first.record["interval"] == [0.1, 0.3]
    assert [e.seq for e in log.tail(3)] == [8, 9, 10]
    assert log.verify([Head(5, log.tail(6)[0].hash)]).ok


def test_all_event_kinds_are_accepted(log):
    action = Action(ActionKind.HOLD, "call-1", "acme", "hold-on-synthetic", "r", State.SYNTHETIC,
                    0.9, (0.8, 0.95), 12.0, "default@1", "held")
    log.append(action.to_dict())
    log.append(Notice("call-1", "window_dropped", "overload", 3.0).to_dict(), tenant="acme")
    log.append({"type": "policy_change", "tenant": "acme", "policy": DEFAULT_POLICY.to_dict()})
    # What streamguard.enrolment emits: "event" instead of "type", "audio" = metadata only.
    log.append({"event": "enrolment", "subject_id": "s1", "consistency": float("nan"),
                "audio": {"duration_seconds": 9.5, "rms_dbfs": -20.1, "kept": False}})
    log.flush()
    assert [e.type for e in log.entries(since_seq=10)] == [
        "action", "notice", "policy_change", "enrolment"]
    assert log.tail(1)[0].record["consistency"] == "NaN"
    assert log.verify().ok


def test_edited_json_fails_at_that_seq(log):
    tamper(log, "UPDATE entries SET body = replace(body, '\"clear\"', '\"synthetic\"') "
                "WHERE seq = 4")
    result = log.verify()
    assert not result.ok and result.bad_seq == 4 and "edited" in result.reason


def test_edited_index_column_fails(log):
    tamper(log, "UPDATE entries SET tenant = 'other' WHERE seq = 6")
    result = log.verify()
    assert (result.bad_seq, "columns" in result.reason) == (6, True)


def test_deleted_row_fails_at_the_missing_seq(log):
    tamper(log, "DELETE FROM entries WHERE seq = 5")
    result = log.verify()
    assert not result.ok and result.bad_seq == 5 and "missing" in result.reason
    assert "TAMPERED at seq 5" in result.message()


def test_swapped_rows_fail_at_the_first(log):
    db = sqlite3.connect(log.path)
    rows = {s: r for s, *r in db.execute(
        "SELECT seq, ts, tenant, type, body, prev_hash, hash FROM entries WHERE seq IN (3, 7)")}
    for seq, other in ((3, 7), (7, 3)):
        db.execute("UPDATE entries SET ts=?, tenant=?, type=?, body=?, prev_hash=?, hash=? "
                   "WHERE seq=?", (*rows[other], seq))
    db.commit()
    result = log.verify()
    assert not result.ok and result.bad_seq == 3 and "link broken" in result.reason


def test_inserted_forged_row_fails(log):
    # Shift 6..10 up by one and forge a well-formed entry at 6 chained onto entry 5.
    db = sqlite3.connect(log.path)
    db.execute("UPDATE entries SET seq = seq + 100 WHERE seq >= 6")
    db.execute("UPDATE entries SET seq = seq - 99 WHERE seq >= 106")
    prev = db.execute("SELECT hash FROM entries WHERE seq = 5").fetchone()[0]
    ts = "2026-01-01T00:00:05.500000Z"
    body = canonical_json({"record": {"type": "action", "kind": "release"}, "tenant": "acme",
                           "ts": ts, "type": "action"})
    digest = chain_hash(bytes.fromhex(prev), 6, body).hex()
    db.execute("INSERT INTO entries VALUES (6, ?, 'acme', 'action', ?, ?, ?)",
               (ts, body.decode(), prev, digest))
    db.commit()
    result = log.verify()
    assert not result.ok and result.bad_seq == 7  # the forged row is fine; its successor is not

    # A forged row appended with a made-up hash fails at its own seq.
    db.execute("INSERT INTO entries VALUES (12, ?, 'acme', 'action', ?, ?, ?)",
               (ts, body.decode(), "00" * 32, "11" * 32))
    db.commit()
    assert log.verify().bad_seq == 7


def test_truncated_tail_is_caught_by_a_published_anchor(log):
    anchor = log.head()
    tamper(log, "DELETE FROM entries WHERE seq >= 9")
    assert log.verify().ok  # a keyless chain cannot see a cut tail by itself
    result = log.verify([anchor])
    assert not result.ok and result.bad_seq == 10 and "truncated" in result.reason


def test_prune_keeps_verification_passing(tmp_path):
    clock = Clock()
    log = AuditLog(tmp_path / "a.sqlite3", clock=clock, batch_size=4)
    for i in range(20):
        log.append(verdict(i))
    anchor = log.tail(15)[0]  # seq 6, will be pruned
    cutoff = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=11.5)  # seq k at t=k+1 s
    prune = log.prune(cutoff)
    assert prune is not None and prune.seq == 21
    assert prune.record["through_seq"] == 10 and prune.record["removed"] == 10
    assert [e.seq for e in log.entries()][:2] == [11, 12]
    result = log.verify([Head(anchor.seq, anchor.hash)])
    assert result.ok and result.first_seq == 11 and result.checkpoint.seq == 10
    log.append(verdict(99))
    log.flush()
    assert log.prune(cutoff) is None  # nothing older left
    assert log.prune(clock.now + timedelta(seconds=1)) is not None  # again, everything
    assert log.verify().ok and log.head().seq == 23 and len(log) == 1
    assert len(log.checkpoints()) == 2
    # A log reopened later continues the chain after the checkpoint.
    log.close()
    log = AuditLog(tmp_path / "a.sqlite3", clock=clock)
    log.append(verdict(100))
    log.flush()
    assert log.verify().ok and log.head().seq == 24
    log.close()


def test_forged_or_removed_checkpoint_fails(tmp_path):
    log = AuditLog(tmp_path / "a.sqlite3", clock=Clock())
    for i in range(10):
        log.append(verdict(i))
    log.prune(datetime(2026, 1, 1, 0, 0, 6, 500000, tzinfo=UTC))  # removes 1..5
    assert log.verify().ok
    tamper(log, "DELETE FROM checkpoints")
    assert log.verify().bad_seq == 1
    # Someone deletes 6..8 and writes a checkpoint over them: no prune entry vouches for it.
    row = sqlite3.connect(log.path).execute("SELECT hash FROM entries WHERE seq = 8").fetchone()
    tamper(log, "DELETE FROM entries WHERE seq <= 8")
    tamper(log, "INSERT INTO checkpoints VALUES (8, ?, 10, 'x', 8)", row[0])
    result = log.verify()
    assert not result.ok and "not vouched" in result.reason
    log.close()


@pytest.mark.parametrize("record", [
    {"type": "verdict", "audio": base64.b64encode(b"\x01\x02" * 400).decode()},
    {"type": "media", "payload": "f" * 5000},
    {"type": "enrolment", "embedding": [0.1] * 256},
    {"type": "enrolment", "voiceprint": {"vector": list(range(200))}},
    {"type": "verdict", "pcm": b"\x00\x01" * 80},
    {"type": "verdict", "extra": np.zeros(160, dtype=np.int16)},
    {"type": "notice", "note": base64.b64encode(bytes(range(256)) * 4).decode()},
])
def test_raw_media_is_refused(tmp_path, record):
    with AuditLog(tmp_path / "a.sqlite3") as log, pytest.raises(RawMediaError) as err:
        log.append(record)
    assert "never" in str(err.value)


def test_bad_records_are_refused(tmp_path):
    with AuditLog(tmp_path / "a.sqlite3") as log:
        with pytest.raises(AuditError, match="type"):
            log.append({"stream_id": "x"})
        with pytest.raises(AuditError, match="serialisable"):
            log.append({"type": "x", "obj": object()})
        assert log.head() is None and log.verify().ok


def test_default_path():
    assert str(default_path({"STREAMGUARD_DATA_DIR": "/d"})) == "/d/audit.sqlite3"
    assert str(default_path({"XDG_DATA_HOME": "/x"})) == "/x/streamguard/audit.sqlite3"
    assert default_path({}).parts[-4:] == (".local", "share", "streamguard", "audit.sqlite3")


async def test_sink_writes_in_the_background(tmp_path):
    sink = AuditSink(tmp_path / "a.sqlite3", interval=0.01)
    sink.start()
    for i in range(50):
        sink.emit(verdict(i))
    sink.emit({"type": "verdict", "audio": "A" * 1000})
    await asyncio.sleep(0.2)
    reader = AuditLog(tmp_path / "a.sqlite3", readonly=True)
    assert len(reader) == 50 and sink.rejected == 1  # committed and visible to others
    sink.emit(verdict(51))
    await sink.close()
    assert len(reader) == 51 and reader.verify().ok
    reader.close()


def test_cli_verify_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STREAMGUARD_DATA_DIR", str(tmp_path))
    assert main(["audit", "verify"]) == 2  # no log yet
    log = AuditLog(tmp_path / "audit.sqlite3")
    for i in range(5):
        log.append(verdict(i))
    log.close()
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out
    assert main(["audit", "tail", "-n", "2", "--tenant", "acme"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [4, 5]
    assert main(["audit", "head"]) == 0
    head = capsys.readouterr().out.strip()
    assert main(["audit", "verify", "--anchor", head]) == 0
    tamper(log, "UPDATE entries SET body = replace(body, 'acme', 'evil') WHERE seq = 3")
    other = tmp_path / "elsewhere.sqlite3"
    (tmp_path / "audit.sqlite3").rename(other)
    assert main(["audit", "verify", "--db", str(other)]) == 1
    assert "seq 3" in capsys.readouterr().err
