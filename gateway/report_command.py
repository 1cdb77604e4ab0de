"""``streamguard report``: the transparency report as Markdown + JSON (+ SVG chart, HTML).

``--sign`` writes a detached Ed25519 signature over report.json
(``report.json.sig.json``: algorithm, SHA-256, signature, key fingerprint) and
the public key next to it (``report-signing.pub.pem``). The private key lives
in the data dir (``report-signing.key``, mode 0600, created on first use).
``streamguard report verify DIR`` checks a report against the installation's
public key when there is one (``--public-key`` to pin another), else against
the key shipped in DIR, which proves integrity but not who signed.

Bench results live in the source repository, not in the installed package:
``--bench-dir`` defaults to the repository's ``bench/results`` when this
package runs from a checkout (or the current directory has one); otherwise
detection rates are reported as "not measured".
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamguard
from streamguard.audit import AuditError, AuditLog
from streamguard.report import build_report, parse_since, write_report

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BAD_SIGNATURE = 1


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
    report.add_argument("--sign", action="store_true",
                        help="sign report.json (detached Ed25519, key in the data dir)")
    report.add_argument("--public-key", type=Path, default=None,
                        help="with 'verify': the signer's public key (PEM) to check against")
    report.add_argument("verify", nargs="*", metavar="verify DIR",
                        help="'verify DIR': check the signature of a report directory")


SIGNATURE_FILE = "report.json.sig.json"
PUBLIC_KEY_FILE = "report-signing.pub.pem"
PRIVATE_KEY_FILE = "report-signing.key"


def _fingerprint(public: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def signing_key() -> Any:
    """The installation's Ed25519 report-signing key (created on first use, mode 0600)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.prompts_store import data_dir, private_file

    fresh = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    pem = private_file(data_dir() / PRIVATE_KEY_FILE, fresh)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{data_dir() / PRIVATE_KEY_FILE}: not an Ed25519 private key")
    return key


def _public_pem(public: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(public.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo))


def sign_report(out_dir: Path) -> list[Path]:
    """Detached signature over ``out_dir/report.json`` plus the public key next to it."""
    key = signing_key()
    data = (out_dir / "report.json").read_bytes()
    public = key.public_key()
    record = {"algorithm": "Ed25519", "file": "report.json",
              "sha256": hashlib.sha256(data).hexdigest(),
              "signature": base64.b64encode(key.sign(data)).decode(),
              "key_fingerprint": _fingerprint(public), "public_key": PUBLIC_KEY_FILE}
    (out_dir / SIGNATURE_FILE).write_text(json.dumps(record, indent=1) + "\n")
    (out_dir / PUBLIC_KEY_FILE).write_bytes(_public_pem(public))
    return [out_dir / SIGNATURE_FILE, out_dir / PUBLIC_KEY_FILE]


def verify_report(directory: Path, public_key: Path | None = None) -> tuple[bool, str]:
    """(ok, message) for the signature in ``directory``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from gateway.prompts_store import data_dir

    try:
        record = json.loads((directory / SIGNATURE_FILE).read_text())
        data = (directory / "report.json").read_bytes()
        signature = base64.b64decode(record["signature"], validate=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"no readable signature in {directory}: {exc}"
    if record.get("algorithm") != "Ed25519":
        return False, f"unsupported signature algorithm {record.get('algorithm')!r}"
    own = data_dir() / PRIVATE_KEY_FILE
    try:
        if public_key is not None:
            pem, source = public_key.read_bytes(), f"pinned key {public_key}"
        elif own.exists():
            pem, source = _public_pem(signing_key().public_key()), "this installation's key"
        else:
            pem = (directory / PUBLIC_KEY_FILE).read_bytes()
            source = "the key shipped with the report (integrity only: not who signed)"
        public = serialization.load_pem_public_key(pem)
    except (OSError, ValueError) as exc:
        return False, f"public key unreadable: {exc}"
    if not isinstance(public, Ed25519PublicKey):
        return False, "public key is not Ed25519"
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False, (f"signature does NOT match report.json under {source} "
                       f"(fingerprint {_fingerprint(public)})")
    return True, f"signature valid: {source}, fingerprint {_fingerprint(public)}"


def run_report(args: argparse.Namespace) -> int:
    from gateway.audit_command import audit_db

    if args.verify:
        if len(args.verify) != 2 or args.verify[0] != "verify":
            print("streamguard: usage: streamguard report verify DIR", file=sys.stderr)
            return EXIT_USAGE
        ok, message = verify_report(Path(args.verify[1]), args.public_key)
        print(f"{args.verify[1]}: {message}", file=sys.stdout if ok else sys.stderr)
        return EXIT_OK if ok else EXIT_BAD_SIGNATURE

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
    written = write_report(report, args.out, chart=not args.no_chart, html=args.html)
    if args.sign:
        try:
            written += sign_report(args.out)
        except (OSError, ValueError) as exc:
            print(f"streamguard: signing failed: {exc}", file=sys.stderr)
            return EXIT_USAGE
    for path in written:
        print(path)
    if not report["audit_integrity"]["ok"]:
        print(f"streamguard: warning: {report['audit_integrity']['message']}", file=sys.stderr)
    return EXIT_OK
