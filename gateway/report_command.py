"""``streamguard report``: the transparency report as Markdown + JSON (+ SVG chart, HTML).

Bench results live in the source repository, not in the installed package:
``--bench-dir`` defaults to the repository's ``bench/results`` when this
package runs from a checkout (or the current directory has one); otherwise
detection rates are reported as "not measured".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamguard
from streamguard.audit import AuditError, AuditLog
from streamguard.report import build_report, parse_since, write_report

EXIT_OK = 0
EXIT_USAGE = 2


def default_bench_dir() -> Path | None:
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = root / "bench" / "results"
        if candidate.is_dir():
            return candidate
    return None


def card_dirs() -> list[Path]:
    dirs = [Path(streamguard.__file__).resolve().parent / "models"]
    repo_models = Path(__file__).resolve().parents[1] / "models"
    if repo_models.is_dir():
        dirs.append(repo_models)
    return dirs


def add_report_parser(sub: Any, db_option: Callable[[argparse.ArgumentParser], None]) -> None:
    report = sub.add_parser("report", help="write the transparency report (Markdown + JSON)")
    db_option(report)
    report.add_argument("--since", default=None,
                        help="only records since then: 7d, 24h, 30m or an ISO date/time")
    report.add_argument("--tenant", default=None, help="only this tenant")
    report.add_argument("--out", type=Path, default=Path("streamguard-report"),
                        help="output directory (default ./streamguard-report)")
    report.add_argument("--bench-dir", type=Path, default=None,
                        help="bench results with eer.json (default: the repo's bench/results)")
    report.add_argument("--html", action="store_true", help="also write report.html")
    report.add_argument("--no-chart", action="store_true", help="skip the SVG chart")


def run_report(args: argparse.Namespace) -> int:
    from gateway.audit_command import audit_db

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"streamguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    bench_dir = args.bench_dir if args.bench_dir is not None else default_bench_dir()
    try:
        log = AuditLog(audit_db(args.db), readonly=True)
    except AuditError as exc:
        print(f"streamguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = build_report(log, since=since, tenant=args.tenant, bench_dir=bench_dir,
                              card_dirs=card_dirs())
    finally:
        log.close()
    for path in write_report(report, args.out, chart=not args.no_chart, html=args.html):
        print(path)
    if not report["audit_integrity"]["ok"]:
        print(f"streamguard: warning: {report['audit_integrity']['message']}", file=sys.stderr)
    return EXIT_OK
