"""Process-wide gateway state: the Guard, sinks, prompts, metrics, live calls."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.bridge import CallBridge, EventSink
from gateway.prompts_store import Prompts
from gateway.settings import GatewaySettings
from streamguard import Guard


@dataclass
class Metrics:
    connections: Counter[str] = field(default_factory=Counter)
    protocol_errors: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)


class GatewayRuntime:
    def __init__(self, settings: GatewaySettings, guard: Guard, sink: EventSink,
                 prompts: Prompts) -> None:
        self.settings = settings
        self.guard = guard
        self._sink = sink
        self.prompts = prompts
        self.metrics = Metrics()
        self.calls: set[CallBridge] = set()
        self.accepting = True

    @property
    def sink(self) -> EventSink:
        """What bridges emit into: counts actions for /metrics, then fans out."""
        return self

    def emit(self, record: dict[str, Any]) -> None:
        if record.get("type") == "action":
            self.metrics.actions[str(record["kind"])] += 1
        elif record.get("type") == "protocol_error":
            self.metrics.protocol_errors[str(record["protocol"])] += 1
        self._sink.emit(record)

    @contextmanager
    def track(self, bridge: CallBridge) -> Iterator[CallBridge]:
        self.calls.add(bridge)
        try:
            yield bridge
        finally:
            self.calls.discard(bridge)

    async def drain(self) -> None:
        """Graceful shutdown: finish every live call so its final verdict is recorded."""
        self.accepting = False
        if self.calls:
            await asyncio.wait_for(
                asyncio.gather(*(b.finish("gateway shutdown") for b in list(self.calls)),
                               return_exceptions=True),
                self.settings.drain_timeout_s)
