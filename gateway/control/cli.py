"""``streamguard tenant add``, ``streamguard key create|revoke``, ``streamguard webhooks``.

They work on the control store that ``streamguard serve`` uses (``--control-db``,
default ``$STREAMGUARD_DATA_DIR/control.sqlite3`` or the XDG data dir). A key is
printed once, on creation; only its hash is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from gateway.control.tenants import ROLES, ControlError, TenantStore

CONTROL_COMMANDS = ("tenant", "key", "webhooks")


def default_control_db() -> Path:
    from gateway.enrol_command import data_file

    return data_file("control.sqlite3", dict(os.environ))


def add_control_parsers(sub: Any) -> None:
    def db(p: argparse.ArgumentParser) -> None:
        p.add_argument("--control-db", type=Path, default=None, metavar="DB",
                       help="control store (default: $STREAMGUARD_DATA_DIR/control.sqlite3)")

    tenant = sub.add_parser("tenant", help="manage tenants")
    tenant_sub = tenant.add_subparsers(dest="tenant_command", required=True)
    add = tenant_sub.add_parser("add", help="create a tenant")
    add.add_argument("name")
    db(add)
    listing = tenant_sub.add_parser("list", help="list tenants")
    db(listing)

    key = sub.add_parser("key", help="manage API keys")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    create = key_sub.add_parser("create", help="create an API key (printed once)")
    create.add_argument("tenant")
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--label", default=None)
    db(create)
    revoke = key_sub.add_parser("revoke", help="revoke an API key by its id")
    revoke.add_argument("key_id")
    db(revoke)

    hooks = sub.add_parser("webhooks", help="tenant webhooks")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    replay = hooks_sub.add_parser("replay", help="resend dead-lettered webhook deliveries")
    replay.add_argument("--tenant", default=None)
    db(replay)


def run_control_command(args: argparse.Namespace) -> int:
    store = TenantStore(args.control_db or default_control_db())
    try:
        if args.command == "tenant":
            if args.tenant_command == "add":
                store.add_tenant(args.name)
                print(f"tenant {args.name} created")
            else:
                for t in store.tenants():
                    print(f"{t['name']}\twebhook={'yes' if t['webhook_url'] else 'no'}")
            return 0
        if args.command == "key":
            if args.key_command == "create":
                key_id, key = store.create_key(args.tenant, args.role, args.label)
                print(f"key id: {key_id}", file=sys.stderr)
                print("store this key now; it is not shown again:", file=sys.stderr)
                print(key)
                return 0
            if store.revoke_key(args.key_id):
                print(f"key {args.key_id} revoked")
                return 0
            print(f"streamguard: no active key {args.key_id}", file=sys.stderr)
            return 1
        from gateway.control.webhooks import replay_dead_letters

        ok, failed = asyncio.run(replay_dead_letters(store, args.tenant))
        print(f"redelivered {ok}, still failing {failed}")
        return 0 if failed == 0 else 1
    except ControlError as exc:
        print(f"streamguard: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
