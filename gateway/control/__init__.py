"""The control plane: tenants and keys, policies, sessions, live events, webhooks, dashboard.

:class:`ControlPlane` is built by :class:`gateway.server.Gateway` when
``GatewaySettings.control_enabled`` (the default). It needs the audit log: the
live events carry its sequence numbers and past sessions are read from it, so
when no ``audit_db`` is configured the gateway keeps one in a temporary file
(see :func:`audit_path`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.control.api import ControlApi
from gateway.control.events import EventHub
from gateway.control.tenants import TenantStore
from gateway.control.webhooks import TenantWebhooks
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from streamguard.audit import AuditLog
from streamguard.policy import Policy

ADMIN_KEY_ENV = "STREAMGUARD_ADMIN_KEY"

__all__ = ["ControlPlane", "TenantStore", "audit_path"]


def audit_path(settings: GatewaySettings) -> Path | None:
    """The audit log the gateway writes: the configured one, or a temporary file when
    the control plane is on without one; None when neither wants a log."""
    if settings.audit_db is not None:
        return settings.audit_db
    if not settings.control_enabled:
        return None
    directory = tempfile.mkdtemp(prefix="streamguard-audit-")
    atexit.register(shutil.rmtree, directory, True)
    return Path(directory) / "audit.sqlite3"


def dashboard_html() -> str:
    return resources.files("gateway").joinpath("static/dashboard.html").read_text("utf-8")


async def dashboard(request: Request) -> Response:
    return HTMLResponse(dashboard_html(), headers={
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                   "style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:",
    })


class ControlPlane:
    def __init__(self, runtime: GatewayRuntime, audit: AuditLog,
                 store: TenantStore | None = None) -> None:
        settings = runtime.settings
        self.store = store or TenantStore(settings.control_db or ":memory:",
                                          bootstrap_key=os.environ.get(ADMIN_KEY_ENV) or None)
        self.hub = EventHub(audit, queue_size=settings.events_queue_size)
        self.webhooks = TenantWebhooks(self.store, attempts=settings.webhook_attempts,
                                       base_delay=settings.webhook_base_delay_s)
        self.hub.listeners.append(self.webhooks)
        self.api = ControlApi(runtime, self.store, self.hub, self.webhooks)

    def routes(self) -> list[BaseRoute]:
        return [*self.api.routes(), Route("/dashboard", dashboard)]

    def start(self) -> None:
        """Start the event hub and put every tenant's stored policy in force."""
        for tenant in self.store.tenants():
            stored = self.store.policy(tenant["name"])
            if stored is not None:
                self.runtime.guard.set_policy(tenant["name"], Policy.from_dict(stored["policy"]))
        self.hub.start()

    async def close(self) -> None:
        await self.hub.close()
        await self.webhooks.close()
        self.store.close()
