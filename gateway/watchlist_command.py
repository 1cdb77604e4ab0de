"""``streamguard watchlist add | list | remove``: a tenant's known fraud voices.

A watchlist entry is the voiceprint of a voice heard committing fraud
against the tenant (e.g. from a confirmed fraud call). Those people have not
consented, unlike enrolled customers; keeping their voiceprints is allowed
only as the tenant's own fraud-prevention list: scoped to that tenant, used
only to flag live calls for review (warn / step-up, never an automatic
verdict on a person), listable, and deletable entry by entry (``remove``
deletes the row with SQLite ``secure_delete``; with ``--fleet`` it is removed
from the shared Redis copy too, which running gateways re-read within
seconds). No audio is kept. Additions and removals go to the audit log
without the voiceprint.

The store is ``--db``, else ``$STREAMGUARD_DATA_DIR/watchlist.sqlite3``,
else ``$XDG_DATA_HOME/streamguard/watchlist.sqlite3``; ``serve`` loads it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gateway.enrol_command import data_file
from streamguard import MediaError
from streamguard.audit import AuditLog
from streamguard.enrolment import Enroller, EnrolmentRefused, MemoryEnrolmentStore
from streamguard.fleet import SQLiteWatchlistStore, WatchlistEntry, utcnow
from streamguard.media import decode_file
from streamguard.speaker import SpeakerEncoder

EXIT_OK = 0
EXIT_FAILED = 1


def watchlist_db(args: argparse.Namespace) -> Path:
    return args.db or data_file("watchlist.sqlite3", dict(os.environ))


def add_watchlist_parser(sub: Any) -> None:
    watch = sub.add_parser("watchlist", help="a tenant's known fraud voices (add, list, remove)")
    cmds = watch.add_subparsers(dest="watchlist_command", required=True)

    def stores(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", type=Path, default=None, help="watchlist store (SQLite)")
        p.add_argument("--audit-db", type=Path, default=None, help="audit log (SQLite)")
        p.add_argument("--fleet", default=None, metavar="URL",
                       help="also update the shared watchlist of a redis:// fleet")

    add = cmds.add_parser("add", help="add a fraud voice from recordings of it")
    add.add_argument("tenant")
    add.add_argument("entry_id")
    add.add_argument("audio", nargs="+", help="recordings of that voice alone")
    add.add_argument("--label", required=True, help="e.g. the fraud case reference")
    stores(add)
    listing = cmds.add_parser("list", help="list entries (no voiceprints)")
    listing.add_argument("tenant", nargs="?", default=None)
    stores(listing)
    remove = cmds.add_parser("remove", help="delete an entry")
    remove.add_argument("tenant")
    remove.add_argument("entry_id")
    stores(remove)


def _audit(args: argparse.Namespace, event: dict[str, Any]) -> None:
    path = args.audit_db or data_file("audit.sqlite3", dict(os.environ))
    path.parent.mkdir(parents=True, exist_ok=True)
    with AuditLog(path) as audit:
        audit.append({"type": "watchlist", **event})
        audit.flush()


async def _sync_redis(url: str, entry: WatchlistEntry | None, tenant: str,
                      entry_id: str) -> None:
    from gateway.fleet_redis import RedisFleet

    fleet = RedisFleet(url)
    try:
        if entry is not None:
            fleet.add_watch(entry)
        else:
            fleet.remove_watch(tenant, entry_id)
        await fleet._client.ping()
        await fleet._flush()
    finally:
        await fleet.close()


def run_watchlist_command(args: argparse.Namespace,
                          encoder: SpeakerEncoder | None = None) -> int:
    db = watchlist_db(args)
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        if args.watchlist_command == "list":
            with SQLiteWatchlistStore(db) as store:
                for entry in store.entries(args.tenant):
                    print(json.dumps(entry.summary()))
            return EXIT_OK
        if args.watchlist_command == "remove":
            with SQLiteWatchlistStore(db) as store:
                removed = store.remove(args.tenant, args.entry_id)
            if args.fleet:
                asyncio.run(_sync_redis(args.fleet, None, args.tenant, args.entry_id))
            _audit(args, {"event": "watchlist_remove", "tenant": args.tenant,
                          "entry_id": args.entry_id, "removed": removed})
            print(json.dumps({"tenant": args.tenant, "entry_id": args.entry_id,
                              "removed": removed}))
            return EXIT_OK if removed else EXIT_FAILED
        # add: the enrolment audio checks (length, silence, music, several voices) apply.
        encoder = encoder or SpeakerEncoder.load()
        checker = Enroller(encoder, MemoryEnrolmentStore())
        audio = np.concatenate([decode_file(path, sample_rate=16000).pcm for path in args.audio])
        wav, _ = checker.check_audio(audio)
        utterance = encoder.embed_utterance(wav)
        entry = WatchlistEntry(args.tenant, args.entry_id, args.label, utterance.embedding,
                               utcnow(), speech_seconds=utterance.speech_seconds)
        with SQLiteWatchlistStore(db) as store:
            store.add(entry)
        if args.fleet:
            asyncio.run(_sync_redis(args.fleet, entry, args.tenant, args.entry_id))
        _audit(args, {"event": "watchlist_add", **entry.summary()})
        print(json.dumps(entry.summary()))
        return EXIT_OK
    except EnrolmentRefused as exc:
        print(json.dumps({"refused": exc.reason.value, "detail": exc.detail}))
        print(f"streamguard: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (MediaError, ValueError) as exc:
        print(f"streamguard: {exc}", file=sys.stderr)
        return EXIT_FAILED
