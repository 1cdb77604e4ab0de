"""The ``streamguard`` command: scan files, run the live demo, import models.

Configuration is resolved here, at the edge, and passed into the core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.audit_command import AUDIT_COMMANDS, add_audit_parsers, run_audit_command
from gateway.control.cli import (
    CONTROL_COMMANDS,
    add_control_parsers,
    default_control_db,
    run_control_command,
)
from gateway.enrol_command import add_enrol_parsers, data_file, run_enrol_command
from gateway.watchlist_command import add_watchlist_parser, run_watchlist_command
from gateway.watermark_command import add_watermark_parser, run_watermark
from streamguard import GuardConfig, ModelError, StreamGuardError
from streamguard.disclosure import DeclaredAgent
from streamguard.watermark import WatermarkKey
from streamguard.windows import WindowSpec

EXIT_OK = 0
EXIT_FILE_FAILED = 1
EXIT_USAGE = 2


def user_model_dir() -> Path:
    """Where imported models go: ``$STREAMGUARD_MODEL_DIR`` or the XDG data dir."""
    env = os.environ.get("STREAMGUARD_MODEL_DIR")
    if env:
        return Path(env)
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return data_home / "streamguard" / "models"


def resolve_model(spec: str | None) -> Path | None:
    """A model path, or the name of a model in the user model dir; None = shipped default."""
    if spec is None:
        return None
    path = Path(spec)
    if path.suffix == ".onnx" or path.exists():
        return path
    return user_model_dir() / f"{spec}.onnx"


def watermark_key(text: str) -> WatermarkKey:
    """``VENDOR:KEY_ID:SECRET_HEX`` from the command line."""
    try:
        vendor, key_id, secret = text.split(":")
        return WatermarkKey(int(vendor), int(key_id), bytes.fromhex(secret))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected VENDOR:KEY_ID:SECRET_HEX ({exc})") from exc


def declared_agent(text: str) -> DeclaredAgent:
    """``TENANT:AGENT_ID:CONSENT_REF`` from the command line."""
    parts = text.split(":", 2)
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError("expected TENANT:AGENT_ID:CONSENT_REF")
    return DeclaredAgent(*parts)


def guard_config(args: argparse.Namespace) -> GuardConfig:
    window = WindowSpec(hop=int(args.hop * 16000))
    return GuardConfig(model_path=resolve_model(args.model), window=window,
                       watermark_keys=tuple(args.trust_watermark),
                       declared_agents=tuple(args.declared_agent),
                       phase_cue=not args.no_phase_cue)


def audit_path(args: argparse.Namespace) -> Path | None:
    if args.no_audit:
        return None
    return args.audit_db or data_file("audit.sqlite3", dict(os.environ))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamguard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="ONNX file or imported model name (default: shipped)")
        p.add_argument("--hop", type=float, default=1.0, help="window hop in seconds")
        p.add_argument("--no-phase-cue", action="store_true",
                       help="score with the model alone, without the relative-phase cue "
                            "fitted for it (a quarter of the CPU per window)")
        p.add_argument("--trust-watermark", type=watermark_key, action="append", default=[],
                       metavar="VENDOR:KEY_ID:SECRET_HEX",
                       help="a disclosure watermark key to trust (repeatable): speech carrying "
                            "it is labelled disclosed_synthetic, never held")
        p.add_argument("--declared-agent", type=declared_agent, action="append", default=[],
                       metavar="TENANT:AGENT_ID:CONSENT_REF",
                       help="an AI agent the tenant declares (repeatable): calls whose "
                            "metadata names it (ai_agent) are disclosed_synthetic")

    scan = sub.add_parser("scan", help="score audio/video files for synthetic speech")
    scan.add_argument("files", nargs="+", help="media files (anything PyAV opens)")
    scan.add_argument("--json", action="store_true", help="JSON Lines, one object per file")
    model_options(scan)

    demo = sub.add_parser("demo", help="play calls through the live pipeline and show verdicts")
    demo.add_argument("files", nargs="*", help="media files (default: bundled sample calls)")
    demo.add_argument("--speed", type=float, default=1.0, help="playback speed (1 = real time)")
    demo.add_argument("--audit-db", type=Path, default=None, metavar="DB",
                      help="audit log (default: the same as serve's)")
    demo.add_argument("--no-audit", action="store_true", help="keep no audit log")
    model_options(demo)

    serve = sub.add_parser("serve", help="run the telephony gateway")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="HTTP/WebSocket port")
    serve.add_argument("--audiosocket-port", type=int, default=9092, help="AudioSocket TCP port")
    serve.add_argument("--events-json", action="store_true",
                       help="print every verdict and action as a JSON line on stdout")
    serve.add_argument("--webhook-url", help="POST every action here (HMAC-SHA256 signed)")
    serve.add_argument("--audit-db", type=Path, default=None, metavar="DB",
                       help="tamper-evident audit log (default: $STREAMGUARD_DATA_DIR/"
                            "audit.sqlite3 or the XDG data dir)")
    serve.add_argument("--no-audit", action="store_true", help="keep no audit log")
    serve.add_argument("--enrolments", type=Path, default=None, metavar="DB",
                       help="voiceprint store: calls whose parameters claim an identity "
                            "(claimed_id / customer_id) are checked against it")
    serve.add_argument("--fleet", default=None, metavar="URL",
                       help="fleet state for campaign detection and watchlists: "
                            "redis://host:port/db to share it between gateways "
                            "(default: this process's memory)")
    serve.add_argument("--no-fleet", action="store_true",
                       help="no campaign detection or watchlists (no per-call voiceprint)")
    serve.add_argument("--watchlist", type=Path, default=None, metavar="DB",
                       help="watchlist store to load (default: the one `streamguard "
                            "watchlist` writes, when it exists)")
    serve.add_argument("--webhook-secret", default=os.environ.get("STREAMGUARD_WEBHOOK_SECRET",
                                                                   ""))
    model_options(serve)

    models = sub.add_parser("models", help="manage detector models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    imp = models_sub.add_parser("import", help="convert a published checkpoint to ONNX")
    imp.add_argument("family", choices=["aasist", "mesonet"],
                     help="model family of the checkpoint (.pth for aasist, .h5 for mesonet)")
    imp.add_argument("checkpoint", type=Path)
    imp.add_argument("--model-dir", type=Path, default=None,
                     help="destination (default: $STREAMGUARD_MODEL_DIR or ~/.local/share)")
    imp.add_argument("--name", default=None, help="model name (default from the variant)")
    models_sub.add_parser("list", help="list imported models")
    add_watermark_parser(sub)
    add_enrol_parsers(sub)
    add_audit_parsers(sub)
    add_watchlist_parser(sub)
    add_control_parsers(sub)
    return parser


def _watchlist_for_serve(args: argparse.Namespace) -> Path | None:
    if args.watchlist is not None:
        return Path(args.watchlist)
    default = data_file("watchlist.sqlite3", dict(os.environ))
    return default if default.exists() else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "scan":
            from gateway.scan_command import run_scan

            return asyncio.run(run_scan(args.files, guard_config(args), as_json=args.json))
        if args.command == "demo":
            from gateway.demo import run_demo

            return asyncio.run(run_demo(args.files, guard_config(args), speed=args.speed,
                                        audit_db=audit_path(args)))
        if args.command == "serve":
            from gateway.server import serve
            from gateway.settings import GatewaySettings

            settings = GatewaySettings(
                host=args.host, port=args.port, audiosocket_port=args.audiosocket_port,
                events_json=args.events_json, webhook_url=args.webhook_url,
                webhook_secret=args.webhook_secret, guard=guard_config(args),
                enrolments_db=args.enrolments, audit_db=audit_path(args),
                fleet_url=args.fleet, fleet_enabled=not args.no_fleet,
                watchlist_db=_watchlist_for_serve(args), control_db=default_control_db())
            return asyncio.run(serve(settings))
        if args.command == "models":
            return run_models(args)
        if args.command == "watermark":
            return run_watermark(args)
        if args.command in ("enrol", "voiceprints", "forget"):
            return run_enrol_command(args)
        if args.command == "watchlist":
            return run_watchlist_command(args)
        if args.command in AUDIT_COMMANDS:
            return run_audit_command(args)
        if args.command in CONTROL_COMMANDS:
            return run_control_command(args)
    except ModelError as exc:
        print(f"streamguard: model error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return EXIT_USAGE


def run_models(args: argparse.Namespace) -> int:
    model_dir = args.model_dir if getattr(args, "model_dir", None) else user_model_dir()
    if args.models_command == "list":
        for meta in sorted(model_dir.glob("*.json")):
            info = json.loads(meta.read_text())
            print(f"{meta.stem:20s} {info.get('architecture', '?'):10s} {info.get('version', '?')}")
        return EXIT_OK
    try:
        if args.family == "mesonet":
            from streamguard.importers.mesonet import import_mesonet as importer
        else:
            from streamguard.importers.aasist import import_aasist as importer
    except ImportError as exc:
        print(f"streamguard: importing needs the dev extra (torch): {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        path = importer(args.checkpoint, model_dir, name=args.name)
    except StreamGuardError as exc:
        print(f"streamguard: import failed: {exc}", file=sys.stderr)
        return EXIT_FILE_FAILED
    print(f"imported {args.checkpoint} -> {path}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
