"""Tenants, API keys, per-tenant policies and webhooks, and webhook dead letters.

One SQLite file (``GatewaySettings.control_db``; ``":memory:"`` for tests).

API keys look like ``sgk_<key_id>_<secret>``: ``key_id`` is 12 hex digits
(public: listed, revoked by it, logged), ``secret`` 32 random bytes in
URL-safe base64. Only SHA-256 of the whole key is stored, so a key is shown
once, on creation, and cannot be recovered. Roles: ``viewer`` < ``analyst``
< ``admin``; each key belongs to one tenant. The bootstrap key from
``$STREAMGUARD_ADMIN_KEY`` is a *super admin* (tenant ``*``): it alone creates
tenants and sees every tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamguard.sqlite_wal import enable_wal

ROLES = ("viewer", "analyst", "admin")
SUPER_TENANT = "*"
KEY_PREFIX = "sgk_"
_KEY_RE = re.compile(r"^sgk_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class ControlError(ValueError):
    """A request the control store refuses (unknown tenant, bad name, bad role)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as."""

    tenant: str
    role: str
    key_id: str

    @property
    def is_super(self) -> bool:
        return self.tenant == SUPER_TENANT and self.role == "admin"

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def can_see(self, tenant: str) -> bool:
        return self.is_super or (tenant == self.tenant and tenant != "")


@dataclass(frozen=True, slots=True)
class Webhook:
    tenant: str
    url: str
    secret: str

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"Webhook(tenant={self.tenant!r}, url={self.url!r}, secret='***')"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key_id, full key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def valid_tenant(name: str) -> bool:
    return bool(_TENANT_RE.match(name))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY, created REAL NOT NULL,
    webhook_url TEXT, webhook_secret TEXT
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, role TEXT NOT NULL,
    key_hash TEXT NOT NULL, label TEXT, created REAL NOT NULL, revoked REAL
);
CREATE TABLE IF NOT EXISTS policies (
    tenant TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
    changed_by TEXT, created REAL NOT NULL, PRIMARY KEY (tenant, version)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, url TEXT NOT NULL,
    body TEXT NOT NULL, error TEXT, attempts INTEGER NOT NULL, created REAL NOT NULL
);
"""


class TenantStore:
    """Thread-safe SQLite store of tenants, keys, policies, webhooks and dead letters."""

    def __init__(self, path: str | Path = ":memory:", *,
                 bootstrap_key: str | None = None) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        if self.path != ":memory:":
            enable_wal(self._db)
        self._db.executescript(_SCHEMA)
        self._bootstrap_hash = hash_key(bootstrap_key) if bootstrap_key else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- tenants -----------------------------------------------------------------------------

    def add_tenant(self, name: str) -> dict[str, Any]:
        if not valid_tenant(name):
            raise ControlError("tenant names are 1-64 letters, digits, '_', '.', '-'")
        try:
            self._q("INSERT INTO tenants (name, created) VALUES (?, ?)", (name, time.time()))
        except sqlite3.IntegrityError as exc:
            raise ControlError(f"tenant {name!r} exists") from exc
        return self.tenant(name) or {}

    def tenant(self, name: str) -> dict[str, Any] | None:
        rows = self._q("SELECT name, created, webhook_url FROM tenants WHERE name = ?", (name,))
        if not rows:
            return None
        name, created, url = rows[0]
        return {"name": name, "created": created, "webhook_url": url}

    def tenants(self) -> list[dict[str, Any]]:
        return [{"name": n, "created": c, "webhook_url": u} for n, c, u in
                self._q("SELECT name, created, webhook_url FROM tenants ORDER BY name")]

    def _require(self, tenant: str) -> None:
        if self.tenant(tenant) is None:
            raise ControlError(f"no tenant {tenant!r}")

    # -- keys --------------------------------------------------------------------------------

    def create_key(self, tenant: str, role: str, label: str | None = None) -> tuple[str, str]:
        """A new key for ``tenant``: (key_id, key). The key is not stored, only its hash."""
        if role not in ROLES:
            raise ControlError(f"role must be one of {', '.join(ROLES)}")
        self._require(tenant)
        key_id, key = new_key()
        self._q("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (key_id, tenant, role, hash_key(key), label, time.time()))
        return key_id, key

    def revoke_key(self, key_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE api_keys SET revoked = ? WHERE key_id = ? AND "
                                   "revoked IS NULL", (time.time(), key_id))
            return cur.rowcount > 0

    def key_info(self, key_id: str) -> dict[str, Any] | None:
        rows = self._q("SELECT key_id, tenant, role, label, created, revoked FROM api_keys "
                       "WHERE key_id = ?", (key_id,))
        return self._key_dict(rows[0]) if rows else None

    def keys(self, tenant: str) -> list[dict[str, Any]]:
        return [self._key_dict(r) for r in self._q(
            "SELECT key_id, tenant, role, label, created, revoked FROM api_keys "
            "WHERE tenant = ? ORDER BY created", (tenant,))]

    @staticmethod
    def _key_dict(row: tuple[Any, ...]) -> dict[str, Any]:
        key_id, tenant, role, label, created, revoked = row
        return {"key_id": key_id, "tenant": tenant, "role": role, "label": label,
                "created": created, "revoked": revoked is not None}

    def authenticate(self, key: str | None) -> Principal | None:
        """The principal for ``key``; None for a missing, malformed, unknown or revoked key."""
        if not key:
            return None
        digest = hash_key(key)
        if self._bootstrap_hash is not None and hmac.compare_digest(digest,
                                                                    self._bootstrap_hash):
            return Principal(SUPER_TENANT, "admin", "bootstrap")
        match = _KEY_RE.match(key)
        if match is None:
            return None
        rows = self._q("SELECT tenant, role, key_hash, revoked FROM api_keys WHERE key_id = ?",
                       (match.group(1),))
        if not rows:
            return None
        tenant, role, stored, revoked = rows[0]
        if revoked is not None or not hmac.compare_digest(stored, digest):
            return None
        return Principal(tenant, role, match.group(1))

    # -- webhooks ----------------------------------------------------------------------------

    def set_webhook(self, tenant: str, url: str | None, secret: str | None) -> None:
        self._require(tenant)
        self._q("UPDATE tenants SET webhook_url = ?, webhook_secret = ? WHERE name = ?",
                (url, secret, tenant))

    def webhook(self, tenant: str) -> Webhook | None:
        rows = self._q("SELECT webhook_url, webhook_secret FROM tenants WHERE name = ?",
                       (tenant,))
        if not rows or not rows[0][0]:
            return None
        return Webhook(tenant, rows[0][0], rows[0][1] or "")

    def add_dead_letter(self, tenant: str, url: str, body: bytes, error: str,
                        attempts: int) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO dead_letters (tenant, url, body, error, attempts, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, url, body.decode(), error[:500], attempts, time.time()))
            return int(cur.lastrowid or 0)

    def dead_letters(self, tenant: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, tenant, url, body, error, attempts, created FROM dead_letters"
        args: tuple[Any, ...] = ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant = ?", (tenant,)
        return [{"id": i, "tenant": t, "url": u, "body": b, "error": e, "attempts": a,
                 "created": c} for i, t, u, b, e, a, c in self._q(sql + " ORDER BY id", args)]

    def remove_dead_letter(self, letter_id: int) -> None:
        self._q("DELETE FROM dead_letters WHERE id = ?", (letter_id,))

    # -- policies ----------------------------------------------------------------------------

    def add_policy(self, tenant: str, policy: dict[str, Any], changed_by: str) -> int:
        """Store a new version of ``tenant``'s policy; returns its version number."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT MAX(version) FROM policies WHERE tenant = ?",
                                       (tenant,)).fetchone()
                version = int(row[0] or 0) + 1
                self._db.execute("INSERT INTO policies VALUES (?, ?, ?, ?, ?)",
                                 (tenant, version, json.dumps(policy, sort_keys=True),
                                  changed_by, time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return version

    def policy(self, tenant: str, version: int | None = None) -> dict[str, Any] | None:
        if version is None:
            rows = self._q("SELECT version, body, changed_by, created FROM policies "
                           "WHERE tenant = ? ORDER BY version DESC LIMIT 1", (tenant,))
        else:
            rows = self._q("SELECT version, body, changed_by, created FROM policies "
                           "WHERE tenant = ? AND version = ?", (tenant, version))
        if not rows:
            return None
        v, body, by, created = rows[0]
        return {"version": v, "policy": json.loads(body), "changed_by": by, "created": created}

    def policy_versions(self, tenant: str) -> list[dict[str, Any]]:
        return [{"version": v, "changed_by": by, "created": c} for v, by, c in self._q(
            "SELECT version, changed_by, created FROM policies WHERE tenant = ? "
            "ORDER BY version", (tenant,))]
