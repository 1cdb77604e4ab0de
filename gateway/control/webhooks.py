"""Per-tenant signed webhooks fed from the event hub, with a dead-letter table.

Each tenant may register a URL and a secret. Events of the types in
:data:`DELIVERED_TYPES` (final verdicts only) for that tenant are POSTed as
``{"seq", "ts", "tenant", "type", "record"}`` with the gateway's usual
``StreamGuard-Signature: t=<unix>,v1=<hmac>`` header (see ``gateway.sinks``),
retried with exponential backoff; after the last attempt the body goes to the
``dead_letters`` table, which ``streamguard webhooks replay`` resends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx

from gateway.control.tenants import TenantStore, Webhook
from gateway.sinks import sign

log = logging.getLogger("streamguard.gateway.control")

DELIVERED_TYPES = frozenset({"action", "feedback", "policy_change", "campaign",
                             "watchlist_match", "identity"})


def wanted(event: dict[str, Any]) -> bool:
    if event["type"] == "verdict":
        return bool(event["record"].get("final"))
    return event["type"] in DELIVERED_TYPES


async def post_signed(client: httpx.AsyncClient, hook: Webhook, body: bytes) -> str | None:
    """One delivery attempt: None on a 2xx, else why it failed (never the secret)."""
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json",
               "StreamGuard-Signature": sign(hook.secret, timestamp, body)}
    try:
        response = await client.post(hook.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


class TenantWebhooks:
    def __init__(self, store: TenantStore, *, attempts: int = 4, base_delay: float = 0.5,
                 timeout: float = 5.0, max_in_flight: int = 1000,
                 concurrency: int = 32) -> None:
        self.store = store
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_in_flight = max_in_flight
        # Deliveries wait for one of ``concurrency`` slots before each attempt, so a burst
        # queues here instead of timing out in the connection pool.
        self._client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency))
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._hooks: dict[str, tuple[float, Webhook | None]] = {}
        self.delivered = 0
        self.dead = 0

    def _hook(self, tenant: str) -> Webhook | None:
        cached = self._hooks.get(tenant)
        now = time.monotonic()
        if cached is None or now - cached[0] > 1.0:
            cached = (now, self.store.webhook(tenant))
            self._hooks[tenant] = cached
        return cached[1]

    def invalidate(self, tenant: str) -> None:
        self._hooks.pop(tenant, None)

    def __call__(self, event: dict[str, Any]) -> None:
        """Hub listener: schedule a delivery, never block."""
        if not event["tenant"] or not wanted(event):
            return
        hook = self._hook(event["tenant"])
        if hook is None:
            return
        body = json.dumps(event, default=str, sort_keys=True).encode()
        if len(self._tasks) >= self.max_in_flight:
            self.store.add_dead_letter(hook.tenant, hook.url, body, "too many in flight", 0)
            self.dead += 1
            return
        task = asyncio.get_running_loop().create_task(self._deliver(hook, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, hook: Webhook, body: bytes) -> None:
        error = "not attempted"
        for attempt in range(self.attempts):
            async with self._slots:
                error = await post_signed(self._client, hook, body) or ""
            if not error:
                self.delivered += 1
                return
            log.warning("webhook for tenant %s attempt %d failed: %s", hook.tenant,
                        attempt + 1, error)
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.base_delay * 2**attempt)
        self.store.add_dead_letter(hook.tenant, hook.url, body, error, self.attempts)
        self.dead += 1

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()


async def replay_dead_letters(store: TenantStore, tenant: str | None = None,
                              timeout: float = 10.0) -> tuple[int, int]:
    """Resend dead letters (to the tenant's current webhook, else the original URL);
    delivered ones are removed. Returns (delivered, still failing)."""
    ok = failed = 0
    async with httpx.AsyncClient(timeout=timeout) as client:
        for letter in store.dead_letters(tenant):
            current = store.webhook(letter["tenant"])
            hook = current or Webhook(letter["tenant"], letter["url"], "")
            if await post_signed(client, hook, letter["body"].encode()) is None:
                store.remove_dead_letter(letter["id"])
                ok += 1
            else:
                failed += 1
    return ok, failed
