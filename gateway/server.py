"""``streamguard serve``: one asyncio process for every telephony edge.

HTTP/WebSocket (Starlette on uvicorn) carries Twilio Media Streams at
``/media/twilio`` and Genesys AudioHook at ``/media/audiohook``, plus health,
readiness, metrics and the published policy; a plain TCP server carries
Asterisk AudioSocket. All share one Guard, so windows from every call are
batched together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from gateway.adapters.audiosocket_tcp import audiosocket_handler
from gateway.adapters.websocket_calls import audiohook_endpoint, twilio_endpoint
from gateway.audit_sink import AuditSink
from gateway.bridge import EventSink
from gateway.control import ControlPlane, audit_path
from gateway.prompts_store import Prompts
from gateway.runtime import GatewayRuntime
from gateway.settings import GatewaySettings
from gateway.sinks import FanOut, JsonLinesSink, WebhookSink
from streamguard import Guard, ModelError
from streamguard.enrolment import SQLiteEnrolmentStore
from streamguard.events import Event
from streamguard.fleet import FleetState, MemoryFleet, SQLiteWatchlistStore

log = logging.getLogger("streamguard.gateway")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    runtime: GatewayRuntime = request.app.state.runtime
    if not runtime.accepting:
        return JSONResponse({"status": "draining"}, status_code=503)
    return JSONResponse({"status": "ready", "model": runtime.guard.detector.version})


async def policy(request: Request) -> Response:
    runtime: GatewayRuntime = request.app.state.runtime
    return JSONResponse(runtime.guard.config.policy.to_dict())


async def metrics(request: Request) -> Response:
    runtime: GatewayRuntime = request.app.state.runtime
    stats = runtime.guard.batcher.stats
    lines = [
        "# TYPE streamguard_live_calls gauge",
        f"streamguard_live_calls {len(runtime.calls)}",
        "# TYPE streamguard_windows_scored_total counter",
        f"streamguard_windows_scored_total {stats.scored}",
        "# TYPE streamguard_windows_dropped_total counter",
        f"streamguard_windows_dropped_total {stats.dropped}",
        *_fleet_metrics(runtime.guard),
        "# TYPE streamguard_queue_depth gauge",
        f"streamguard_queue_depth {stats.pending}",
        "# TYPE streamguard_connections_total counter",
        *(f'streamguard_connections_total{{protocol="{p}"}} {n}'
          for p, n in sorted(runtime.metrics.connections.items())),
        "# TYPE streamguard_protocol_errors_total counter",
        *(f'streamguard_protocol_errors_total{{protocol="{p}"}} {n}'
          for p, n in sorted(runtime.metrics.protocol_errors.items())),
        "# TYPE streamguard_actions_total counter",
        *(f'streamguard_actions_total{{kind="{k}"}} {n}'
          for k, n in sorted(runtime.metrics.actions.items())),
    ]
    return PlainTextResponse("\n".join(lines) + "\n")


_FLEET_GAUGES = ("connected", "buffered_summaries", "pending_reports", "watchlist_entries")


def _fleet_metrics(guard: Guard) -> list[str]:
    """``streamguard_fleet_*``: summaries, gaps (count and seconds), re-syncs, buffer."""
    if guard.fleet is None:
        return []
    lines = []
    for key, value in sorted(guard.fleet.fleet.stats().items()):
        name = f"streamguard_fleet_{key}"
        lines += [f"# TYPE {name} {'gauge' if key in _FLEET_GAUGES else 'counter'}",
                  f"{name} {value:g}"]
    return lines


def build_fleet(settings: GatewaySettings) -> FleetState:
    """In-memory fleet by default; ``redis://`` URLs share state between gateways."""
    url = settings.fleet_url
    if url is None or url == "memory":
        return MemoryFleet()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.fleet_redis import RedisFleet

        return RedisFleet(url)
    raise ValueError(f"unsupported fleet URL {url!r} (expected redis://host:port/db)")


def build_app(runtime: GatewayRuntime, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    app = Starlette(routes=[
        *(extra_routes or []),
        WebSocketRoute("/media/twilio", twilio_endpoint),
        WebSocketRoute("/media/audiohook", audiohook_endpoint),
        Route("/healthz", health),
        Route("/readyz", ready),
        Route("/metrics", metrics),
        Route("/policy", policy),
    ])
    app.state.runtime = runtime
    return app


def _webrtc_edge(runtime: GatewayRuntime) -> Any:
    """The WHIP/WHEP edge, or ``None`` when disabled or aiortc is not installed."""
    if not runtime.settings.webrtc_enabled:
        return None
    try:
        from gateway.webrtc.whip import WebRtcEdge
    except ImportError as exc:
        log.warning("WebRTC edge disabled: %s", exc)
        return None
    return WebRtcEdge(runtime)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: ``serve`` owns SIGINT/SIGTERM so that
    live calls are drained before the HTTP server stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Gateway:
    """Start/stop handle used by ``serve`` and by tests (port 0 picks a free port)."""

    def __init__(self, settings: GatewaySettings, guard: Guard | None = None,
                 sinks: list[EventSink] | None = None) -> None:
        self.settings = settings
        self._guard = guard
        self._extra_sinks = sinks or []
        self.runtime: GatewayRuntime | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._tcp: asyncio.Server | None = None
        self._webhook: WebhookSink | None = None
        self._enrolments: SQLiteEnrolmentStore | None = None
        self._audit: AuditSink | None = None
        self.fleet: FleetState | None = None
        self.control: ControlPlane | None = None
        self.port = settings.port
        self.audiosocket_port = settings.audiosocket_port
        self.webrtc: Any = None  # gateway.webrtc.whip.WebRtcEdge when aiortc is installed

    async def start(self) -> None:
        settings = self.settings
        if self._guard is None and settings.enrolments_db is not None:
            self._enrolments = SQLiteEnrolmentStore(settings.enrolments_db)
        guard = self._guard or await self._build_guard()
        sinks: list[Any] = list(self._extra_sinks)
        if settings.events_json:
            sinks.append(JsonLinesSink())
        audit_db = audit_path(settings)
        if audit_db is not None:
            audit_db.parent.mkdir(parents=True, exist_ok=True)
            self._audit = AuditSink(audit_db)
            self._audit.start()
            sinks.append(self._audit)
        if settings.webhook_url:
            self._webhook = WebhookSink(settings.webhook_url, settings.webhook_secret)
            sinks.append(self._webhook)
        runtime = GatewayRuntime(settings, guard, FanOut(*sinks), Prompts.bundled())
        self.runtime = runtime
        if guard.fleet is not None:
            def fleet_record(event: Event) -> None:
                runtime.sink.emit({**event.to_dict(), "scope": "fleet"})

            guard.fleet.sinks.append(fleet_record)
        self.webrtc = _webrtc_edge(runtime)
        routes = self.webrtc.routes() if self.webrtc is not None else []
        if settings.control_enabled and self._audit is not None:
            self.control = ControlPlane(runtime, self._audit.log)
            self.control.start()
            routes += self.control.routes()
        config = uvicorn.Config(build_app(runtime, routes), host=settings.host, port=settings.port,
                                ws_max_size=settings.max_message_bytes, lifespan="off",
                                log_level="warning", ws_ping_interval=None,
                                ws_per_message_deflate=False,
                                timeout_graceful_shutdown=int(settings.drain_timeout_s) + 1)
        self._uvicorn = _EmbeddedServer(config)
        self._http_task = asyncio.get_running_loop().create_task(self._uvicorn.serve())
        while not self._uvicorn.started:
            if self._http_task.done():
                self._http_task.result()
            await asyncio.sleep(0.01)
        self.port = self._uvicorn.servers[0].sockets[0].getsockname()[1]
        self._tcp = await asyncio.start_server(audiosocket_handler(runtime), settings.host,
                                               settings.audiosocket_port, limit=64 * 1024)
        self.audiosocket_port = self._tcp.sockets[0].getsockname()[1]

    async def _build_guard(self) -> Guard:
        settings = self.settings
        if not settings.fleet_enabled:
            return Guard.from_config(settings.guard, enrolments=self._enrolments)
        fleet = build_fleet(settings)
        if settings.watchlist_db is not None:
            with SQLiteWatchlistStore(settings.watchlist_db) as store:
                for entry in store.entries():
                    fleet.add_watch(entry)
        try:
            guard = Guard.from_config(settings.guard, enrolments=self._enrolments, fleet=fleet)
        except ModelError as exc:
            if settings.fleet_url is not None:
                raise
            log.warning("fleet disabled, no speaker model: %s", exc)
            return Guard.from_config(settings.guard, enrolments=self._enrolments)
        await fleet.start()
        self.fleet = fleet
        return guard

    async def stop(self) -> None:
        """Stop accepting, drain live calls (final verdicts), then close everything."""
        runtime = self.runtime
        if runtime is None:
            return
        runtime.accepting = False
        if self._tcp is not None:
            self._tcp.close()
        if self.webrtc is not None:
            await self.webrtc.close()
        with contextlib.suppress(TimeoutError):
            await runtime.drain()
        if self._uvicorn is not None and self._http_task is not None:
            self._uvicorn.should_exit = True
            await self._http_task
        if self._tcp is not None:
            await self._tcp.wait_closed()
        if self._webhook is not None:
            await self._webhook.close()
        if self.control is not None:
            await self.control.close()
            self.control = None
        if self._audit is not None:
            await self._audit.close()
        if self._guard is None:
            await runtime.guard.close()
        if self.fleet is not None:
            await self.fleet.close()
            self.fleet = None
        if self._enrolments is not None:
            self._enrolments.close()
        self.runtime = None


async def serve(settings: GatewaySettings) -> int:
    gateway = Gateway(settings)
    await gateway.start()
    log.warning("streamguard serving: http://%s:%s (twilio /media/twilio, audiohook "
                "/media/audiohook), audiosocket tcp %s:%s", settings.host, gateway.port,
                settings.host, gateway.audiosocket_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.stop()
    return 0
