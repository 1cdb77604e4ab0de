"""Append-only, tamper-evident audit log of everything StreamGuard decides.

Every record (verdicts, actions, notices, policy changes, enrolments,
erasures: any JSON-serialisable dict with a ``type``, or an ``event`` as the
enrolment module emits) becomes one row of an SQLite table (WAL mode) with a
sequence number, a UTC timestamp, the tenant, the canonical JSON of an
*envelope* and a hash chain.

Chain (version ``streamguard-audit/1``)::

    envelope_n  = {"record": <record>, "tenant": <str>, "ts": <ISO-8601 UTC>, "type": <str>}
    body_n      = canonical JSON of envelope_n: sorted keys, separators "," and ":",
                  UTF-8, non-ASCII kept, no NaN/Infinity (those floats are stored as
                  the strings "NaN", "Infinity", "-Infinity")
    hash_0      = SHA-256(b"streamguard-audit/1 genesis\\x00" || log_id)      # per log
    hash_n      = SHA-256(hash_{n-1} || uint64_be(n) || body_n)              # raw digests

``seq`` starts at 1 and has no gaps. The row also stores ``prev_hash`` (so
``verify`` can tell an edited entry from a broken link) and copies of ts,
tenant and type for indexed queries; ``verify`` checks the copies against the
body too.

Retention: :meth:`AuditLog.prune` removes a *prefix* of the chain. In one
transaction it appends an ``audit_prune`` entry naming the last pruned seq and
its hash, records the same pair in the ``checkpoints`` table, then deletes the
prefix. ``verify`` restarts the chain from the newest checkpoint and accepts it
only if a surviving ``audit_prune`` entry (itself inside the chain) vouches for
exactly that seq and hash.

What a keyless chain cannot prove: someone with write access can rewrite the
whole file, or cut or extend its tail consistently. Publish :meth:`head`
(seq + hash) somewhere else now and then and pass it as ``verify(anchors=...)``;
then any change before an anchored head is detected.

Raw media never enters the log: records with bytes, keys such as ``audio``,
``pcm`` or ``embedding`` carrying samples, long numeric arrays or large
base64-looking strings are refused with :class:`RawMediaError`.

Writes are batched: entries become durable at :meth:`flush` (or automatically
every ``batch_size`` entries / ``max_delay`` seconds, checked on append).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from streamguard.errors import StreamGuardError
from streamguard.sqlite_wal import enable_wal

VERSION = "streamguard-audit/1"
GENESIS_PREFIX = b"streamguard-audit/1 genesis\x00"
PRUNE_TYPE = "audit_prune"
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

#: Keys whose value must never be media samples or voiceprints.
MEDIA_KEYS = frozenset({
    "audio", "pcm", "samples", "waveform", "wav", "media", "mulaw", "ulaw", "alaw",
    "payload", "frame", "frames", "video", "image", "jpeg", "png", "embedding",
    "embeddings", "voiceprint", "vector", "partials", "spectrogram", "features",
})
MAX_STRING = 4096         # longer strings are refused outright
MAX_MEDIA_STRING = 256    # a string under a media key longer than this is refused
MAX_NUMBERS = 64          # a list of more numbers than this looks like samples/embeddings
MAX_RECORD_BYTES = 64 * 1024
_BASE64ISH = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")


class AuditError(StreamGuardError):
    """A record that cannot go into the audit log, or a log that cannot be opened."""


class RawMediaError(AuditError):
    """The record carries raw audio/video or a voiceprint; those never enter the log."""


@dataclass(frozen=True, slots=True)
class Head:
    """The last entry's seq and hash: publish it elsewhere to anchor the chain."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Head:
        seq, _, digest = text.partition(":")
        if not seq.strip().isdigit() or len(digest.strip()) != 64:
            raise ValueError(f"expected SEQ:HASH (64 hex digits), got {text!r}")
        return cls(int(seq), digest.strip().lower())

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: str
    tenant: str
    type: str
    record: dict[str, Any]
    hash: str
    prev_hash: str

    @property
    def time(self) -> datetime:
        return parse_ts(self.ts)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "tenant": self.tenant, "type": self.type,
                "record": self.record, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_seq: int | None = None       # first entry still in the log
    head: Head | None = None            # last entry verified (or the checkpoint if none)
    bad_seq: int | None = None          # first seq where the chain fails
    reason: str | None = None
    checkpoint: Head | None = None      # where verification started after a prune

    def __bool__(self) -> bool:
        return self.ok

    def message(self) -> str:
        if self.ok:
            span = (f"entries {self.first_seq}..{self.head.seq}"
                    if self.first_seq is not None and self.head else "no entries")
            start = f", chain resumed from pruned checkpoint {self.checkpoint}" \
                if self.checkpoint else ""
            return f"intact: {self.checked} {span}{start}; head {self.head}"
        return f"TAMPERED at seq {self.bad_seq}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_seq": self.first_seq,
                "head": self.head.to_dict() if self.head else None,
                "bad_seq": self.bad_seq, "reason": self.reason,
                "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None}


def format_ts(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, TS_FORMAT).replace(tzinfo=UTC)


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; the exact bytes the chain hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def genesis_hash(log_id: str) -> bytes:
    return hashlib.sha256(GENESIS_PREFIX + log_id.encode("utf-8")).digest()


def chain_hash(prev: bytes, seq: int, body: bytes) -> bytes:
    return hashlib.sha256(prev + seq.to_bytes(8, "big") + body).digest()


def _looks_base64(text: str) -> bool:
    """Long runs of the base64 alphabet only: encoded audio, images, embeddings."""
    return len(text) >= MAX_MEDIA_STRING and _BASE64ISH.match(text) is not None


class _Refused(Exception):
    """Internal: a refusal on its way up; collects the path to the offending value."""

    def __init__(self, cls: type[AuditError], message: str) -> None:
        self.cls, self.message = cls, message
        self.trail: list[str] = []


_NEVER = "raw audio, video and voiceprints are never logged"


def normalise(value: Any, path: str = "record") -> Any:
    """A JSON-ready copy of ``value``; raises RawMediaError/AuditError on what must not go in.

    Tuples become lists, enums their values, datetimes ISO strings, non-finite
    floats the strings "NaN"/"Infinity"/"-Infinity".
    """
    try:
        return _norm(value, path.rsplit(".", 1)[-1])
    except _Refused as refused:
        where = path + "".join(reversed(refused.trail))
        raise refused.cls(f"{where}: {refused.message}") from None


def _norm(value: Any, key: str) -> Any:
    t = type(value)
    if t is str:
        if len(value) >= MAX_MEDIA_STRING:
            _check_long_string(value, key)
        return value
    if t is float:
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or t is int or t is bool:
        return value
    if t is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _Refused(AuditError, f"keys must be strings, got {type(k).__name__}")
            try:
                out[k] = _norm(v, k)
            except _Refused as refused:
                refused.trail.append(f".{k}")
                raise
        return out
    if t is list or t is tuple:
        if len(value) > 4:
            numbers = sum(1 for v in value if type(v) in (int, float))
            if numbers > MAX_NUMBERS or (key.lower() in MEDIA_KEYS and numbers > 4):
                raise _Refused(RawMediaError, f"array of {len(value)} numbers refused (looks "
                                              f"like samples or an embedding); {_NEVER}")
        items = []
        for i, v in enumerate(value):
            try:
                items.append(_norm(v, ""))
            except _Refused as refused:
                refused.trail.append(f"[{i}]")
                raise
        return items
    # Less common types, subclasses included.
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, enum.Enum):
        return _norm(value.value, key)
    if isinstance(value, str):
        return _norm(str(value), key)
    if isinstance(value, float):
        return _norm(float(value), key)
    if isinstance(value, bytes | bytearray | memoryview):
        raise _Refused(RawMediaError, f"{len(value)} bytes of binary data refused; {_NEVER}")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return _norm(dict(value), key)
    if isinstance(value, list | tuple):
        return _norm(list(value), key)
    shape = getattr(value, "shape", None)
    if shape == () and hasattr(value, "item"):  # numpy scalars
        return _norm(value.item(), key)
    if shape is not None:  # numpy arrays and the like
        raise _Refused(RawMediaError, f"array of shape {shape} refused; {_NEVER}")
    raise _Refused(AuditError, f"{type(value).__name__} is not JSON-serialisable")


def _check_long_string(value: str, key: str) -> None:
    if key.lower() in MEDIA_KEYS:
        raise _Refused(RawMediaError, f"{len(value)} characters under a media key; {_NEVER}")
    if len(value) > MAX_STRING:
        kind = "base64-looking payload" if _looks_base64(value) else "string"
        raise _Refused(RawMediaError, f"{len(value)}-character {kind} refused (limit "
                                      f"{MAX_STRING}); the audit log never stores media")
    if _looks_base64(value) and " " not in value.strip():
        raise _Refused(RawMediaError, f"{len(value)}-character base64-looking payload "
                                      "refused; the audit log never stores media")


def record_type(record: dict[str, Any]) -> str:
    kind = record.get("type", record.get("event"))
    if not isinstance(kind, str) or not kind:
        raise AuditError("an audit record needs a non-empty string 'type' (or 'event')")
    return kind


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_tenant ON entries (tenant, seq);
CREATE INDEX IF NOT EXISTS entries_type ON entries (type, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    through_seq INTEGER PRIMARY KEY,
    through_hash TEXT NOT NULL,
    prune_seq INTEGER NOT NULL,
    pruned_at TEXT NOT NULL,
    removed INTEGER NOT NULL
);
"""


class AuditLog:
    """The append-only log at ``path`` (created if missing unless ``readonly``).

    ``append`` is cheap (no commit); entries are committed by :meth:`flush`,
    automatically once ``batch_size`` are pending or the oldest pending one is
    ``max_delay`` seconds old (checked on append), and by :meth:`close`.
    Thread-safe; several processes may write the same file (each batch
    re-reads the head inside ``BEGIN IMMEDIATE``).
    """

    def __init__(self, path: str | Path, *, batch_size: int = 256, max_delay: float = 0.25,
                 readonly: bool = False,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = Path(path)
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.readonly = readonly
        self._clock = clock
        self._lock = threading.RLock()
        if readonly:
            if not self.path.exists():
                raise AuditError(f"no audit log at {self.path}")
            uri = f"file:{self.path.resolve()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None,
                                       check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None,
                                       check_same_thread=False)
            enable_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (VERSION,))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('log_id', ?)",
                             (uuid.uuid4().hex,))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)",
                             (format_ts(clock()),))
        try:
            rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise AuditError(f"{self.path} is not a StreamGuard audit log: {exc}") from exc
        if rows.get("version") != VERSION or "log_id" not in rows:
            raise AuditError(f"{self.path} is not a {VERSION} audit log")
        self.log_id: str = rows["log_id"]
        self._pending = 0
        self._pending_since = 0.0
        self._seq = 0
        self._prev = b""

    # -- writing -------------------------------------------------------------------------

    def _load_head(self) -> None:
        row = self._db.execute(
            "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            row = self._db.execute("SELECT through_seq, through_hash FROM checkpoints "
                                   "ORDER BY through_seq DESC LIMIT 1").fetchone()
        if row is None:
            self._seq, self._prev = 0, genesis_hash(self.log_id)
        else:
            self._seq, self._prev = int(row[0]), bytes.fromhex(row[1])

    def append(self, record: dict[str, Any], *, tenant: str | None = None) -> AuditEntry:
        """Add one record; returns its entry (seq, hash). Not durable until flushed."""
        return self._append(record, tenant, autoflush=True)

    def _append(self, record: dict[str, Any], tenant: str | None, *,
                autoflush: bool) -> AuditEntry:
        if self.readonly:
            raise AuditError("audit log opened read-only")
        if not isinstance(record, dict):
            raise AuditError(f"an audit record is a dict, got {type(record).__name__}")
        kind = record_type(record)
        clean = normalise(record)
        who = tenant if tenant is not None else record.get("tenant")
        who = who if isinstance(who, str) else ""
        with self._lock:
            ts = format_ts(self._clock())
            body = canonical_json({"record": clean, "tenant": who, "ts": ts, "type": kind})
            if len(body) > MAX_RECORD_BYTES:
                raise RawMediaError(f"record of {len(body)} bytes refused "
                                    f"(limit {MAX_RECORD_BYTES}); media is never logged")
            if self._pending == 0:
                self._db.execute("BEGIN IMMEDIATE")
                self._load_head()
                self._pending_since = time.monotonic()
            seq = self._seq + 1
            digest = chain_hash(self._prev, seq, body)
            entry = AuditEntry(seq, ts, who, kind, clean, digest.hex(), self._prev.hex())
            try:
                self._db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (seq, ts, who, kind, body.decode("utf-8"), entry.prev_hash,
                                  entry.hash))
            except sqlite3.Error:
                if self._pending == 0:
                    self._db.execute("ROLLBACK")
                raise
            self._seq, self._prev = seq, digest
            self._pending += 1
            if autoflush and (self._pending >= self.batch_size
                    or time.monotonic() - self._pending_since >= self.max_delay):
                self.flush()
            return entry

    def extend(self, records: Iterable[dict[str, Any]]) -> list[AuditEntry]:
        return [self.append(r) for r in records]

    def flush(self) -> int:
        """Commit pending entries; returns how many became durable."""
        with self._lock:
            if self._pending == 0:
                return 0
            self._db.execute("COMMIT")
            done, self._pending = self._pending, 0
            return done

    @property
    def pending(self) -> int:
        return self._pending

    def close(self) -> None:
        with self._lock:
            if not self.readonly:
                self.flush()
            self._db.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    def head(self) -> Head | None:
        """Last seq and hash (including unflushed entries of this connection)."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            return Head(int(row[0]), str(row[1])) if row else None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def entries(self, tenant: str | None = None, since_seq: int = 0,
                types: Iterable[str] | None = None, *, since: datetime | None = None,
                page: int = 1000) -> Iterator[AuditEntry]:
        """Entries with seq > ``since_seq`` in order, optionally of one tenant / some types.

        Pages through the table, so appends during iteration are seen and no
        transaction is held open between pages.
        """
        where, args = ["seq > ?"], []
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        kinds = list(types) if types is not None else None
        if kinds is not None:
            if not kinds:
                return
            where.append(f"type IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        if since is not None:
            where.append("ts >= ?")
            args.append(format_ts(since))
        sql = ("SELECT seq, ts, tenant, type, body, prev_hash, hash FROM entries WHERE "
               + " AND ".join(where) + " ORDER BY seq LIMIT ?")
        last = since_seq
        while True:
            with self._lock:
                rows = self._db.execute(sql, (last, *args, page)).fetchall()
            for seq, ts, who, kind, body, prev, digest in rows:
                envelope = json.loads(body)
                yield AuditEntry(seq, ts, who, kind, envelope["record"], digest, prev)
                last = seq
            if len(rows) < page:
                return

    def tail(self, n: int = 20, tenant: str | None = None) -> list[AuditEntry]:
        """The last ``n`` entries (oldest first)."""
        sql = "SELECT seq FROM entries" + (" WHERE tenant = ?" if tenant is not None else "")
        sql += " ORDER BY seq DESC LIMIT 1 OFFSET ?"
        with self._lock:
            row = self._db.execute(sql, (*([tenant] if tenant is not None else []),
                                         max(n - 1, 0))).fetchone()
        start = int(row[0]) - 1 if row else 0
        return list(self.entries(tenant=tenant, since_seq=start))[-n:] if n > 0 else []

    def checkpoints(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT through_seq, through_hash, prune_seq, pruned_at, "
                                    "removed FROM checkpoints ORDER BY through_seq").fetchall()
        keys = ("through_seq", "through_hash", "prune_seq", "pruned_at", "removed")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- retention -----------------------------------------------------------------------

    def prune(self, before: datetime, *, reason: str = "retention",
              requested_by: str = "system") -> AuditEntry | None:
        """Delete the entries older than ``before`` (a prefix of the chain).

        Appends an ``audit_prune`` entry and a checkpoint naming the last
        removed seq and hash, so :meth:`verify` resumes from there. Returns the
        prune entry, or None when nothing is old enough. Stops at the first
        entry not older than ``before`` (timestamps are append times, so the
        prefix is normally exactly the old entries).
        """
        if self.readonly:
            raise AuditError("audit log opened read-only")
        cutoff = format_ts(before)
        with self._lock:
            self.flush()
            first_new = self._db.execute(
                "SELECT MIN(seq) FROM entries WHERE ts >= ?", (cutoff,)).fetchone()[0]
            where = "seq < ?" if first_new is not None else "1"
            args: tuple[Any, ...] = (first_new,) if first_new is not None else ()
            row = self._db.execute(
                f"SELECT MIN(seq), MAX(seq), COUNT(*) FROM entries WHERE {where}",
                args).fetchone()
            if row[2] == 0:
                return None
            first, last, count = int(row[0]), int(row[1]), int(row[2])
            last_hash = self._db.execute("SELECT hash FROM entries WHERE seq = ?",
                                         (last,)).fetchone()[0]
            entry = self._append({"type": PRUNE_TYPE, "before": cutoff, "first_seq": first,
                                 "through_seq": last, "through_hash": last_hash,
                                 "removed": count, "reason": reason,
                                 "requested_by": requested_by}, "", autoflush=False)
            try:
                self._db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                                 (last, last_hash, entry.seq, entry.ts, count))
                self._db.execute("DELETE FROM entries WHERE seq <= ?", (last,))
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                self._pending = 0
                self._load_head()
                raise
            self.flush()
            return entry

    # -- verification --------------------------------------------------------------------

    def verify(self, anchors: Iterable[Head] = (), *, page: int = 5000) -> VerifyResult:
        """Recompute the whole chain; the first bad seq and why, or ok.

        Detects edited bodies or hashes, deleted, inserted, renumbered and
        reordered entries, index columns that disagree with the hashed body,
        forged or orphaned prune checkpoints, and (with ``anchors``) any change
        at or before a published head.

        Flushes pending entries, then reads one consistent snapshot through a
        separate read-only connection, so appends carry on meanwhile.
        """
        if not self.readonly:
            self.flush()
        db = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True,
                             isolation_level=None)
        try:
            db.execute("BEGIN")
            return self._verify(db, anchors, page)
        finally:
            db.close()

    def _verify(self, db: sqlite3.Connection, anchors: Iterable[Head],
                page: int) -> VerifyResult:
        cps = db.execute("SELECT through_seq, through_hash, prune_seq FROM "
                         "checkpoints ORDER BY through_seq DESC LIMIT 1").fetchall()
        checkpoint = Head(int(cps[0][0]), str(cps[0][1])) if cps else None
        prune_seq = int(cps[0][2]) if cps else None
        if checkpoint:
            prev, expected = bytes.fromhex(checkpoint.hash), checkpoint.seq + 1
        else:
            prev, expected = genesis_hash(self.log_id), 1
        pending_anchors = {a.seq: a.hash for a in anchors}
        for a_seq, a_hash in list(pending_anchors.items()):
            if checkpoint and a_seq == checkpoint.seq:
                if a_hash != checkpoint.hash:
                    return VerifyResult(False, 0, bad_seq=a_seq, checkpoint=checkpoint,
                                        reason="pruned checkpoint hash differs from the "
                                               f"published anchor {a_seq}:{a_hash[:16]}…")
                del pending_anchors[a_seq]
            elif checkpoint and a_seq < checkpoint.seq:
                del pending_anchors[a_seq]  # pruned away; covered by the checkpoint
        checked, first_seq, head = 0, None, checkpoint
        prune_confirmed = checkpoint is None
        last = 0

        def bad(seq: int, why: str) -> VerifyResult:
            return VerifyResult(False, checked, first_seq, head, seq, why, checkpoint)

        while True:
            rows = db.execute(
                "SELECT seq, ts, tenant, type, body, prev_hash, hash FROM entries "
                "WHERE seq > ? ORDER BY seq LIMIT ?", (last, page)).fetchall()
            for seq, ts, who, kind, body, prev_hex, digest in rows:
                last = seq
                if first_seq is None and seq < expected:
                    return bad(seq, f"entry {seq} lies before the pruned checkpoint "
                                    f"{checkpoint} (inserted or checkpoint forged)")
                if seq != expected:
                    missing = (f"entry {expected} is missing" if seq == expected + 1
                               else f"entries {expected}..{seq - 1} are missing")
                    return bad(expected, f"{missing} (deleted, or seq renumbered); "
                                         f"next present is {seq}")
                if first_seq is None:
                    first_seq = seq
                if not isinstance(body, str | bytes):
                    return bad(seq, "body missing")
                raw = body.encode("utf-8") if isinstance(body, str) else body
                actual = chain_hash(prev, seq, raw).hex()
                if prev_hex != prev.hex():
                    return bad(seq, "chain link broken: prev_hash does not match the hash "
                                    f"of entry {seq - 1} (entries reordered, inserted or "
                                    "deleted)")
                if actual != digest:
                    return bad(seq, "content does not match its hash (entry edited)")
                # The hash holds, so the body is the appender's canonical JSON: its keys
                # sort as record < tenant < ts < type, and the columns must equal its tail.
                if not raw.startswith(b'{"record":') or not raw.endswith(
                        _envelope_tail(who, ts, kind)):
                    return bad(seq, "ts/tenant/type columns disagree with the hashed body "
                                    "(index columns edited)")
                if kind == PRUNE_TYPE and checkpoint and seq == prune_seq:
                    rec = json.loads(raw)["record"]
                    if (rec.get("through_seq"), rec.get("through_hash")) != (
                            checkpoint.seq, checkpoint.hash):
                        return bad(seq, "prune entry disagrees with the checkpoint table")
                    prune_confirmed = True
                anchor = pending_anchors.pop(seq, None)
                if anchor is not None and anchor != digest:
                    return bad(seq, f"hash differs from the published anchor {seq}:"
                                    f"{anchor[:16]}… (log rewritten)")
                prev, expected = bytes.fromhex(digest), seq + 1
                head = Head(seq, digest)
                checked += 1
            if len(rows) < page:
                break
        if not prune_confirmed and checkpoint is not None:
            return bad(checkpoint.seq + 1 if first_seq is None else first_seq,
                       f"checkpoint {checkpoint} is not vouched for by an audit_prune entry "
                       "in the chain (checkpoint forged or prune entry removed)")
        if pending_anchors:
            seq = min(pending_anchors)
            return bad(seq, f"published anchor {seq} is beyond the end of the log "
                            f"(head {head}): entries truncated")
        return VerifyResult(True, checked, first_seq, head, checkpoint=checkpoint)


def _envelope_tail(tenant: str, ts: str, kind: str) -> bytes:
    return canonical_json({"tenant": tenant, "ts": ts, "type": kind}).replace(b"{", b",", 1)


def default_path(env: dict[str, str]) -> Path:
    """``$STREAMGUARD_DATA_DIR/audit.sqlite3``, else the XDG data dir (pass ``os.environ``)."""
    if env.get("STREAMGUARD_DATA_DIR"):
        return Path(env["STREAMGUARD_DATA_DIR"]) / "audit.sqlite3"
    base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else (
        Path.home() / ".local" / "share")
    return base / "streamguard" / "audit.sqlite3"
