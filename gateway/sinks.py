"""Where events go besides the call: stdout JSON lines and signed webhooks.

Webhook bodies are signed with HMAC-SHA256 over ``"{timestamp}.{body}"``
(header ``StreamGuard-Signature: t=<unix>,v1=<hex>``) so a receiver can check
both origin and freshness; a failed delivery is retried with backoff and
never blocks the call.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

log = logging.getLogger("streamguard.gateway")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300.0) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


class JsonLinesSink:
    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream = stream

    def emit(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record, default=str) + "\n")
        self._stream.flush()


class WebhookSink:
    """POSTs action records to a tenant URL; deliveries run as background tasks."""

    def __init__(self, url: str, secret: str, *, attempts: int = 4, base_delay: float = 0.5,
                 timeout: float = 5.0) -> None:
        import httpx

        self.url = url
        self._secret = secret
        self._attempts = attempts
        self._base_delay = base_delay
        self._client = httpx.AsyncClient(timeout=timeout)
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    def emit(self, record: dict[str, Any]) -> None:
        if record.get("type") != "action":
            return
        task = asyncio.get_running_loop().create_task(self._deliver(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, record: dict[str, Any]) -> None:
        body = json.dumps(record, default=str).encode()
        for attempt in range(self._attempts):
            timestamp = int(time.time())
            headers = {"Content-Type": "application/json",
                       "StreamGuard-Signature": sign(self._secret, timestamp, body)}
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
                if response.status_code < 300:
                    self.delivered += 1
                    return
                log.warning("webhook %s answered %s", self.url, response.status_code)
            except Exception as exc:  # network errors of any kind: retry
                log.warning("webhook %s failed: %s", self.url, exc)
            await asyncio.sleep(self._base_delay * 2**attempt)
        self.failed += 1

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()


class FanOut:
    def __init__(self, *sinks: Any) -> None:
        self._sinks = sinks
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def listen(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def emit(self, record: dict[str, Any]) -> None:
        for sink in self._sinks:
            sink.emit(record)
        for listener in list(self._listeners):
            listener(record)
