"""``streamguard audit verify|tail|head`` and registration of ``streamguard report``.

The log is ``--db``, else ``$STREAMGUARD_DATA_DIR/audit.sqlite3``, else
``$XDG_DATA_HOME/streamguard/audit.sqlite3``, else
``~/.local/share/streamguard/audit.sqlite3``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from streamguard.audit import AuditError, AuditLog, Head, default_path

EXIT_OK = 0
EXIT_TAMPERED = 1
EXIT_USAGE = 2
AUDIT_COMMANDS = ("audit", "report")


def audit_db(arg: Path | None) -> Path:
    return arg if arg is not None else default_path(dict(os.environ))


def add_audit_parsers(sub: Any) -> None:
    """Register ``audit`` and ``report`` on the CLI's subparsers."""
    from gateway.report_command import add_report_parser

    audit = sub.add_parser("audit", help="check and read the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", type=Path, default=None,
                       help="audit log (default: $STREAMGUARD_DATA_DIR/audit.sqlite3 or "
                            "the XDG data dir)")

    verify = audit_sub.add_parser("verify", help="recompute the hash chain; exit 1 if tampered")
    db_option(verify)
    verify.add_argument("--anchor", action="append", default=[], metavar="SEQ:HASH",
                        help="a published head that must still be in the chain (repeatable)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    tail = audit_sub.add_parser("tail", help="print the last entries as JSON lines")
    db_option(tail)
    tail.add_argument("-n", type=int, default=20, help="how many entries (default 20)")
    tail.add_argument("--tenant", default=None, help="only this tenant's entries")
    head = audit_sub.add_parser("head", help="print the last seq:hash, to publish elsewhere")
    db_option(head)
    add_report_parser(sub, db_option)


def run_audit_command(args: argparse.Namespace) -> int:
    if args.command == "report":
        from gateway.report_command import run_report

        return run_report(args)
    path = audit_db(args.db)
    try:
        log = AuditLog(path, readonly=True)
    except AuditError as exc:
        print(f"streamguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.audit_command == "verify":
            try:
                anchors = [Head.parse(a) for a in args.anchor]
            except ValueError as exc:
                print(f"streamguard: --anchor: {exc}", file=sys.stderr)
                return EXIT_USAGE
            result = log.verify(anchors)
            if args.json:
                print(json.dumps({"db": str(path), **result.to_dict()}))
            elif result.ok:
                print(f"{path}: {result.message()}")
            else:
                print(f"{path}: {result.message()}", file=sys.stderr)
            return EXIT_OK if result.ok else EXIT_TAMPERED
        if args.audit_command == "tail":
            for entry in log.tail(args.n, tenant=args.tenant):
                print(json.dumps(entry.to_dict(), ensure_ascii=False))
            return EXIT_OK
        if args.audit_command == "head":
            head = log.head()
            print(head if head else "0:empty")
            return EXIT_OK
    finally:
        log.close()
    return EXIT_USAGE
