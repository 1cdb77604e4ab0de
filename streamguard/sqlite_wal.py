"""Switch a SQLite file to write-ahead logging when several processes open it at once.

Gateway nodes of one fleet share the control database, and a node may open the audit log
while ``streamguard audit`` reads it. When two connections change the journal mode of the
same file at the same moment, SQLite answers ``database is locked`` at once, without waiting
on the busy timeout, so a node could die at start-up on a race it would have won a millisecond
later. Retrying the switch for a few seconds makes the start-up order irrelevant.
"""

from __future__ import annotations

import sqlite3
import time

WAL_SWITCH_TIMEOUT_S = 5.0


def enable_wal(db: sqlite3.Connection, *, timeout: float = WAL_SWITCH_TIMEOUT_S) -> None:
    """Put ``db`` in WAL mode, retrying while another connection holds the lock."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
