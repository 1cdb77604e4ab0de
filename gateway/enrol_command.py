"""``streamguard enrol | voiceprints | forget``: voiceprints with recorded consent.

Enrolment needs a consent record (who consented, purpose, expiry, evidence
reference) and refuses without it, or with audio that is too short, silent,
music or several speakers. ``forget`` erases every voiceprint of a person
(right to erasure). Each enrolment, refusal and erasure is appended to the
audit log without the voiceprint. No audio is kept.

The store is ``--db``, else ``$STREAMGUARD_DATA_DIR/enrolments.sqlite3``,
else ``$XDG_DATA_HOME/streamguard/enrolments.sqlite3``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamguard import MediaError
from streamguard.audit import AuditLog
from streamguard.enrolment import (
    ConsentRecord,
    Enroller,
    EnrolmentRefused,
    SQLiteEnrolmentStore,
)
from streamguard.media import decode_file
from streamguard.speaker import SpeakerEncoder

EXIT_OK = 0
EXIT_REFUSED = 1


def data_file(name: str, env: dict[str, str]) -> Path:
    """``$STREAMGUARD_DATA_DIR/name``, else the XDG data dir."""
    if env.get("STREAMGUARD_DATA_DIR"):
        return Path(env["STREAMGUARD_DATA_DIR"]) / name
    base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else (
        Path.home() / ".local" / "share")
    return base / "streamguard" / name


def add_enrol_parsers(sub: Any) -> None:
    def stores(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", type=Path, default=None, help="voiceprint store (SQLite)")
        p.add_argument("--audit-db", type=Path, default=None, help="audit log (SQLite)")

    enrol = sub.add_parser("enrol", help="enrol a person's voiceprint (consent required)")
    enrol.add_argument("subject", help="the person's id, e.g. a customer number")
    enrol.add_argument("audio", nargs="+", help="recordings of that person alone speaking")
    enrol.add_argument("--consented-by", required=True, help="who gave consent")
    enrol.add_argument("--purpose", required=True, help="e.g. caller_verification")
    enrol.add_argument("--granted", default=None,
                       help="when consent was given (ISO 8601, default: now)")
    enrol.add_argument("--expires", required=True, help="consent expiry (ISO 8601 date/time)")
    enrol.add_argument("--evidence", required=True,
                       help="reference to the consent evidence (recording id, form id)")
    stores(enrol)
    listing = sub.add_parser("voiceprints", help="list enrolled voiceprints (no embeddings)")
    stores(listing)
    forget = sub.add_parser("forget", help="erase every voiceprint of a person")
    forget.add_argument("subject")
    forget.add_argument("--requested-by", required=True)
    forget.add_argument("--reason", default="erasure request")
    stores(forget)


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@contextmanager
def _enroller(args: argparse.Namespace, encoder: SpeakerEncoder | None) -> Iterator[Enroller]:
    env = dict(os.environ)
    db = args.db or data_file("enrolments.sqlite3", env)
    audit_db = args.audit_db or data_file("audit.sqlite3", env)
    db.parent.mkdir(parents=True, exist_ok=True)
    audit_db.parent.mkdir(parents=True, exist_ok=True)
    with SQLiteEnrolmentStore(db) as store, AuditLog(audit_db) as audit:
        def record(event: dict[str, Any]) -> None:
            audit.append({"type": "enrolment", "tenant": "default", **event})
            audit.flush()

        yield Enroller(encoder or SpeakerEncoder.load(), store, audit=record)


def run_enrol_command(args: argparse.Namespace, encoder: SpeakerEncoder | None = None) -> int:
    try:
        if args.command == "voiceprints":
            with _enroller(args, encoder) as enroller:
                for subject in enroller.store.subjects():
                    for vp in enroller.store.voiceprints(subject):
                        print(json.dumps(vp.summary()))
            return EXIT_OK
        if args.command == "forget":
            with _enroller(args, encoder) as enroller:
                erased = enroller.delete_subject(args.subject, requested_by=args.requested_by,
                                                 reason=args.reason)
            print(json.dumps(erased.as_dict()))
            return EXIT_OK
        consent = ConsentRecord(
            subject_id=args.subject, consented_by=args.consented_by,
            granted_at=_when(args.granted) if args.granted else datetime.now(UTC),
            purpose=args.purpose, expires_at=_when(args.expires), evidence_ref=args.evidence)
        audio = np.concatenate([decode_file(path, sample_rate=16000).pcm for path in args.audio])
        with _enroller(args, encoder) as enroller:
            voiceprint = enroller.enrol(args.subject, audio, consent)
        print(json.dumps(voiceprint.summary()))
        return EXIT_OK
    except EnrolmentRefused as exc:
        print(json.dumps({"refused": exc.reason.value, "detail": exc.detail}))
        print(f"streamguard: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (MediaError, ValueError) as exc:
        print(f"streamguard: {exc}", file=sys.stderr)
        return EXIT_REFUSED
