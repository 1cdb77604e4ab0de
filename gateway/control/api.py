"""The control-plane HTTP API under ``/api/v1`` and the live events WebSocket.

Auth: ``Authorization: Bearer <key>`` (the events socket also takes ``?key=``).
A missing, malformed, unknown or revoked key is 401; a key whose role is too
low, or that names another tenant, is 403. Every tenant-scoped key sees only
its own tenant; the bootstrap super admin (``$STREAMGUARD_ADMIN_KEY``) sees
all and passes ``?tenant=`` where a tenant must be named. Bodies over
``api_max_body_bytes`` are 413; each key has a token bucket (429 when empty).
Errors are JSON ``{"error": "..."}``; keys and webhook secrets are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.bridge import CallBridge
from gateway.control.events import CLOSE_SLOW, EventHub
from gateway.control.tenants import ROLES, ControlError, Principal, TenantStore
from gateway.control.webhooks import TenantWebhooks
from gateway.runtime import GatewayRuntime
from streamguard.audit import AuditEntry
from streamguard.events import Action, ActionKind
from streamguard.policy import Policy

log = logging.getLogger("streamguard.gateway.control")

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
FEEDBACK_LABELS = ("genuine", "synthetic", "wrong")
MAX_NOTE = 200
SESSION_LIST_LIMIT = 200
REPLAY_ROUNDS = 8


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TokenBuckets:
    """Per-key token bucket: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        return True


def bearer(request: Request | WebSocket) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    role: str | None
    summary: str
    body: bool = False


Handler = Callable[[Request, Principal, Any], Awaitable[Response]]


class ControlApi:
    def __init__(self, runtime: GatewayRuntime, store: TenantStore, hub: EventHub,
                 webhooks: TenantWebhooks) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.store = store
        self.hub = hub
        self.webhooks = webhooks
        self.max_body = settings.api_max_body_bytes
        self.buckets = TokenBuckets(settings.api_rate_per_s, settings.api_burst)
        # failed authentications are limited per client address (key guessing, floods)
        self.failures = TokenBuckets(settings.api_rate_per_s, settings.api_burst)
        self.endpoints: list[tuple[Endpoint, Handler]] = []
        add = self._add
        add(Endpoint("GET", "/tenants", "admin", "List tenants (super admin: all)"),
            self.list_tenants)
        add(Endpoint("POST", "/tenants", "admin", "Create a tenant (super admin)", True),
            self.create_tenant)
        add(Endpoint("GET", "/tenants/{tenant}", "admin", "One tenant"), self.get_tenant)
        add(Endpoint("GET", "/tenants/{tenant}/keys", "admin", "List a tenant's API keys"),
            self.list_keys)
        add(Endpoint("POST", "/tenants/{tenant}/keys", "admin",
                     "Create an API key (the key is returned once)", True), self.create_key)
        add(Endpoint("DELETE", "/keys/{key_id}", "admin", "Revoke an API key"),
            self.revoke_key)
        add(Endpoint("PUT", "/tenants/{tenant}/webhook", "admin",
                     "Set the tenant's webhook URL and secret", True), self.set_webhook)
        add(Endpoint("DELETE", "/tenants/{tenant}/webhook", "admin",
                     "Remove the tenant's webhook"), self.delete_webhook)
        add(Endpoint("GET", "/tenants/{tenant}/dead-letters", "admin",
                     "Webhook deliveries that failed every attempt"), self.dead_letters)
        add(Endpoint("GET", "/policy", "viewer", "The tenant's current policy"),
            self.get_policy)
        add(Endpoint("PUT", "/policy", "admin",
                     "Publish a new policy version (validated, audited)", True),
            self.put_policy)
        add(Endpoint("GET", "/policy/versions", "viewer", "Policy version history"),
            self.policy_versions)
        add(Endpoint("GET", "/sessions", "viewer", "Live and past sessions"),
            self.list_sessions)
        add(Endpoint("GET", "/sessions/{session}", "viewer",
                     "A session: verdict timeline, actions, evidence, model versions"),
            self.get_session)
        add(Endpoint("POST", "/sessions/{session}/hold", "analyst",
                     "Put a live call on hold", True), self.hold)
        add(Endpoint("POST", "/sessions/{session}/release", "analyst",
                     "Release a held call", True), self.release)
        add(Endpoint("POST", "/sessions/{session}/feedback", "analyst",
                     "Mark a verdict right or wrong (recorded for recalibration)", True),
            self.feedback)
        add(Endpoint("GET", "/report", "viewer", "The transparency report (JSON)"),
            self.report)

    # -- plumbing ----------------------------------------------------------------------------

    def _add(self, endpoint: Endpoint, handler: Handler) -> None:
        self.endpoints.append((endpoint, handler))

    def routes(self) -> list[BaseRoute]:
        by_path: dict[str, dict[str, tuple[Endpoint, Handler]]] = {}
        for endpoint, handler in self.endpoints:
            by_path.setdefault(endpoint.path, {})[endpoint.method] = (endpoint, handler)
        routes: list[BaseRoute] = [Route("/api/v1/openapi.json", self.openapi)]
        for path, methods in by_path.items():
            routes.append(Route(f"/api/v1{path}", self._dispatcher(methods),
                                methods=list(methods)))
        routes.append(WebSocketRoute("/api/v1/events", self.events))
        return routes

    def _dispatcher(self, methods: dict[str, tuple[Endpoint, Handler]]
                    ) -> Callable[[Request], Awaitable[Response]]:
        async def dispatch(request: Request) -> Response:
            endpoint, handler = methods[request.method]
            try:
                principal = self.authenticate(request, endpoint.role or "viewer")
                data = await self._body(request) if endpoint.body else None
                return await handler(request, principal, data)
            except ApiError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except ControlError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return dispatch

    def authenticate(self, request: Request, role: str) -> Principal:
        principal = self.store.authenticate(bearer(request))
        if principal is None:
            if not self.failures.allow(request.client.host if request.client else "?"):
                raise ApiError(429, "too many failed authentications")
            raise ApiError(401, "missing, invalid or revoked API key")
        if not self.buckets.allow(principal.key_id):
            raise ApiError(429, "rate limit exceeded")
        if not principal.has(role):
            raise ApiError(403, f"needs role {role}")
        return principal

    async def _body(self, request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            raise ApiError(413, f"body over {self.max_body} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise ApiError(413, f"body over {self.max_body} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, "body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise ApiError(400, "body must be a JSON object")
        return data

    def _tenant(self, principal: Principal, tenant: str) -> str:
        """``tenant`` if the principal may act on it, else 403 (404 for super admin)."""
        if not principal.can_see(tenant):
            raise ApiError(403, "not your tenant")
        if self.store.tenant(tenant) is None and principal.is_super:
            raise ApiError(404, f"no tenant {tenant!r}")
        return tenant

    def _scope(self, request: Request, principal: Principal, *, required: bool) -> str | None:
        """The tenant a request acts on: the key's own, or ``?tenant=`` for the super admin."""
        asked = request.query_params.get("tenant")
        if principal.is_super:
            if asked is None and required:
                raise ApiError(400, "the super admin must name ?tenant=")
            return self._tenant(principal, asked) if asked is not None else None
        if asked is not None and asked != principal.tenant:
            raise ApiError(403, "not your tenant")
        return principal.tenant

    @staticmethod
    def _str(data: dict[str, Any], key: str, *, required: bool = True,
             limit: int = 2048) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value or len(value) > limit:
            raise ApiError(422, f"{key!r} must be a non-empty string of at most {limit}")
        return value

    # -- tenants and keys --------------------------------------------------------------------

    async def list_tenants(self, request: Request, p: Principal, _: Any) -> Response:
        scope = self._scope(request, p, required=False)
        tenants = self.store.tenants()
        return JSONResponse({"tenants": [t for t in tenants if p.can_see(t["name"])
                                         and scope in (None, t["name"])]})

    async def create_tenant(self, request: Request, p: Principal, data: Any) -> Response:
        if not p.is_super:
            raise ApiError(403, "only the super admin creates tenants")
        name = self._str(data, "name", limit=64)
        assert name is not None
        try:
            tenant = self.store.add_tenant(name)
        except ControlError as exc:
            raise ApiError(409 if "exists" in str(exc) else 422, str(exc)) from exc
        self.runtime.emit({"type": "tenant_created", "tenant": name, "by": p.key_id})
        return JSONResponse(tenant, status_code=201)

    async def get_tenant(self, request: Request, p: Principal, _: Any) -> Response:
        tenant = self._tenant(p, request.path_params["tenant"])
        return JSONResponse(self.store.tenant(tenant) or {"name": tenant})

    async def list_keys(self, request: Request, p: Principal, _: Any) -> Response:
        tenant = self._tenant(p, request.path_params["tenant"])
        return JSONResponse({"keys": self.store.keys(tenant)})

    async def create_key(self, request: Request, p: Principal, data: Any) -> Response:
        tenant = self._tenant(p, request.path_params["tenant"])
        role = data.get("role")
        if role not in ROLES:
            raise ApiError(422, f"'role' must be one of {', '.join(ROLES)}")
        label = self._str(data, "label", required=False, limit=200)
        if self.store.tenant(tenant) is None:
            raise ApiError(404, f"no tenant {tenant!r}")
        key_id, key = self.store.create_key(tenant, role, label)
        self.runtime.emit({"type": "key_created", "tenant": tenant, "key_id": key_id,
                           "role": role, "by": p.key_id})
        return JSONResponse({"key_id": key_id, "key": key, "tenant": tenant, "role": role,
                             "note": "store this key now: it is not shown again"},
                            status_code=201)

    async def revoke_key(self, request: Request, p: Principal, _: Any) -> Response:
        key_id = request.path_params["key_id"]
        info = self.store.key_info(key_id)
        if info is None:
            raise ApiError(404, "no such key")
        self._tenant(p, info["tenant"])
        self.store.revoke_key(key_id)
        self.runtime.emit({"type": "key_revoked", "tenant": info["tenant"], "key_id": key_id,
                           "by": p.key_id})
        return JSONResponse({**info, "revoked": True})

    async def set_webhook(self, request: Request, p: Principal, data: Any) -> Response:
        tenant = self._tenant(p, request.path_params["tenant"])
        url = self._str(data, "url", limit=2048)
        secret = self._str(data, "secret", limit=512)
        assert url is not None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiError(422, "'url' must be an http(s) URL")
        if len(secret or "") < 16:
            raise ApiError(422, "'secret' must be at least 16 characters")
        self.store.set_webhook(tenant, url, secret)
        self.webhooks.invalidate(tenant)
        self.runtime.emit({"type": "webhook_changed", "tenant": tenant, "url": url,
                           "by": p.key_id})
        return JSONResponse({"tenant": tenant, "url": url})

    async def delete_webhook(self, request: Request, p: Principal, _: Any) -> Response:
        tenant = self._tenant(p, request.path_params["tenant"])
        self.store.set_webhook(tenant, None, None)
        self.webhooks.invalidate(tenant)
        self.runtime.emit({"type": "webhook_changed", "tenant": tenant, "url": None,
                           "by": p.key_id})
        return JSONResponse({"tenant": tenant, "url": None})

    async def dead_letters(self, request: Request, p: Principal, _: Any) -> Response:
        tenant = self._tenant(p, request.path_params["tenant"])
        return JSONResponse({"dead_letters": self.store.dead_letters(tenant)})

    # -- policies ----------------------------------------------------------------------------

    async def get_policy(self, request: Request, p: Principal, _: Any) -> Response:
        tenant = self._scope(request, p, required=False)
        stored = self.store.policy(tenant) if tenant is not None else None
        if stored is None:
            stored = {"version": 0, "policy": self.runtime.guard.config.policy.to_dict(),
                      "changed_by": None, "created": None}
        return JSONResponse({"tenant": tenant, **stored})

    async def policy_versions(self, request: Request, p: Principal, _: Any) -> Response:
        tenant = self._scope(request, p, required=True)
        assert tenant is not None
        return JSONResponse({"tenant": tenant, "versions": self.store.policy_versions(tenant)})

    async def put_policy(self, request: Request, p: Principal, data: Any) -> Response:
        tenant = self._scope(request, p, required=True)
        assert tenant is not None
        raw = data.get("policy", data)
        if not isinstance(raw, dict):
            raise ApiError(422, "'policy' must be an object")
        try:
            policy = Policy.from_dict(raw).to_dict()
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise ApiError(422, str(exc)[:500]) from exc
        version = self.store.add_policy(tenant, policy, p.key_id)
        self.runtime.guard.set_policy(tenant, Policy.from_dict(policy))
        self.runtime.emit({"type": "policy_change", "tenant": tenant, "version": version,
                           "policy": policy, "changed_by": p.key_id})
        return JSONResponse({"tenant": tenant, "version": version, "policy": policy})

    # -- sessions ----------------------------------------------------------------------------

    def _live(self, tenant: str | None) -> list[CallBridge]:
        return [b for b in list(self.runtime.calls) if b.call_id is not None
                and (tenant is None or b.tenant == tenant)]

    @staticmethod
    def _live_dict(bridge: CallBridge) -> dict[str, Any]:
        legs = {leg: {"state": s.state.value, "on_hold": s.on_hold}
                for leg, s in bridge.sessions.items()}
        return {"session": bridge.call_id, "tenant": bridge.tenant, "protocol": bridge.protocol,
                "live": True, "legs": legs, "frames_received": bridge.frames_received}

    def _past(self, tenant: str | None) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for e in self.hub.audit.entries(tenant=tenant, types=["call_started"]):
            call_id = e.record.get("call_id")
            if isinstance(call_id, str):
                out[call_id] = {"session": call_id, "tenant": e.tenant, "started": e.ts,
                                "seq": e.seq, "protocol": e.record.get("protocol"),
                                "live": False}
        return sorted(out.values(), key=lambda s: s["seq"])[-SESSION_LIST_LIMIT:]

    async def list_sessions(self, request: Request, p: Principal, _: Any) -> Response:
        tenant = self._scope(request, p, required=False)
        live = [self._live_dict(b) for b in self._live(tenant)]
        past = await asyncio.to_thread(self._past, tenant)
        live_ids = {s["session"] for s in live}
        return JSONResponse({"live": live,
                             "past": [s for s in reversed(past) if s["session"] not in live_ids]})

    def _history(self, call_id: str) -> list[AuditEntry]:
        started = None
        for e in self.hub.audit.entries(types=["call_started"]):
            if e.record.get("call_id") == call_id:
                started = e
        if started is None:
            return []
        return [e for e in self.hub.audit.entries(since_seq=started.seq - 1)
                if e.record.get("call_id") == call_id]

    def _session_tenant(self, p: Principal, call_id: str,
                        history: list[AuditEntry]) -> tuple[str, CallBridge | None]:
        bridge = next((b for b in self._live(None) if b.call_id == call_id), None)
        tenant = bridge.tenant if bridge is not None else (
            history[0].tenant if history else None)
        if tenant is None or not p.can_see(tenant):
            raise ApiError(404, "no such session")  # another tenant's session does not exist
        return tenant, bridge

    async def get_session(self, request: Request, p: Principal, _: Any) -> Response:
        call_id = request.path_params["session"]
        history = await asyncio.to_thread(self._history, call_id)
        tenant, bridge = self._session_tenant(p, call_id, history)
        return JSONResponse(session_detail(call_id, tenant, history, bridge, self._live_dict))

    async def _control(self, request: Request, p: Principal, data: Any,
                       kind: ActionKind) -> Response:
        call_id = request.path_params["session"]
        bridge = next((b for b in self._live(None) if b.call_id == call_id), None)
        if bridge is None or not p.can_see(bridge.tenant):
            raise ApiError(404, "no such live session")
        reason = self._str(data, "reason", required=False, limit=MAX_NOTE) or "analyst"
        leg, session = next(iter(bridge.sessions.items()), ("caller", None))
        state = session.state if session is not None else None
        if state is None:
            raise ApiError(409, "the session has no scored leg")
        action = Action(kind=kind, stream_id=f"{call_id}:{leg}", tenant=bridge.tenant,
                        rule="analyst", reason=reason, state=state, probability=None,
                        interval=None, at=round(bridge.frames_received * 0.02, 3),
                        policy_version=self.runtime.guard.config.policy.version)
        record = action.to_dict()
        record.update(call_id=call_id, leg=leg, protocol=bridge.protocol, by=p.key_id,
                      source="analyst")
        self.runtime.emit(record)
        await bridge._apply(action)
        await bridge._report(record)
        return JSONResponse({"session": call_id, "action": kind.value, "leg": leg})

    async def hold(self, request: Request, p: Principal, data: Any) -> Response:
        return await self._control(request, p, data, ActionKind.HOLD)

    async def release(self, request: Request, p: Principal, data: Any) -> Response:
        return await self._control(request, p, data, ActionKind.RELEASE)

    async def feedback(self, request: Request, p: Principal, data: Any) -> Response:
        call_id = request.path_params["session"]
        label = data.get("label")
        if label not in FEEDBACK_LABELS:
            raise ApiError(422, f"'label' must be one of {', '.join(FEEDBACK_LABELS)}")
        seq = data.get("verdict_seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            raise ApiError(422, "'verdict_seq' must be a non-negative integer")
        note = self._str(data, "note", required=False, limit=MAX_NOTE)
        history = await asyncio.to_thread(self._history, call_id)
        tenant, _ = self._session_tenant(p, call_id, history)
        record = {"type": "feedback", "tenant": tenant, "call_id": call_id, "label": label,
                  "verdict_seq": seq, "note": note, "by": p.key_id}
        self.runtime.emit(record)
        return JSONResponse(record, status_code=201)

    # -- report and docs ---------------------------------------------------------------------

    async def report(self, request: Request, p: Principal, _: Any) -> Response:
        from gateway.report_command import card_dirs, default_bench_dir
        from streamguard.report import build_report

        tenant = self._scope(request, p, required=False)
        report = await asyncio.to_thread(build_report, self.hub.audit, tenant=tenant,
                                         bench_dir=default_bench_dir(), card_dirs=card_dirs())
        return JSONResponse(json.loads(json.dumps(report, default=str)))

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_schema(self.endpoints))

    # -- live events -------------------------------------------------------------------------

    async def events(self, websocket: WebSocket) -> None:
        await websocket.accept()
        key = websocket.query_params.get("key") or bearer(websocket)
        principal = self.store.authenticate(key)
        if principal is None:
            await websocket.close(CLOSE_UNAUTHORIZED, "missing, invalid or revoked API key")
            return
        asked = websocket.query_params.get("tenant")
        if principal.is_super:
            tenant = asked
        elif asked is not None and asked != principal.tenant:
            await websocket.close(CLOSE_FORBIDDEN, "not your tenant")
            return
        else:
            tenant = principal.tenant
        since_text = websocket.query_params.get("since")
        since = int(since_text) if since_text is not None and since_text.isdigit() else None
        session = websocket.query_params.get("session")
        sub, until = self.hub.subscribe(tenant, session)
        try:
            # Replay (since, until] from the log while live events queue up; if the queue
            # overflowed meanwhile, catch up from the log again (a few rounds at most).
            for _ in range(REPLAY_ROUNDS):
                if since is None or since >= until:
                    break
                for event in await asyncio.to_thread(self.hub.replay, sub, since, until):
                    await websocket.send_json(event)
                since = until
                if not sub.dropped:
                    break
                self.hub.unsubscribe(sub)
                sub, until = self.hub.subscribe(tenant, session)
            pump = asyncio.create_task(self._pump(websocket, sub))
            receive = asyncio.create_task(_until_disconnect(websocket))
            _, pending = await asyncio.wait({pump, receive},
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.hub.unsubscribe(sub)

    async def _pump(self, websocket: WebSocket, sub: Any) -> None:
        timeout = self.runtime.settings.send_timeout_s
        while True:
            if sub.dropped and sub.queue.empty():
                await websocket.close(CLOSE_SLOW, "too slow: reconnect with ?since=<last seq>")
                return
            text = await sub.queue.get()
            try:
                async with asyncio.timeout(timeout):
                    await websocket.send_text(text)
            except TimeoutError:
                sub.dropped = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(websocket.close(CLOSE_SLOW, "too slow"), 1.0)
                return


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def session_detail(call_id: str, tenant: str, history: list[AuditEntry],
                   bridge: CallBridge | None,
                   live_dict: Callable[[CallBridge], dict[str, Any]]) -> dict[str, Any]:
    timeline, actions, feedback, other = [], [], [], []
    evidence: dict[str, dict[str, Any]] = {}
    models: set[str] = set()
    started = ended = None
    for e in history:
        r = e.record
        if e.type == "verdict":
            timeline.append({"seq": e.seq, "ts": e.ts, "leg": r.get("leg"),
                             "at": r.get("end"), "state": r.get("state"),
                             "probability": r.get("probability"),
                             "interval": r.get("interval"), "final": r.get("final"),
                             "detector": r.get("detector"),
                             "model_version": r.get("model_version")})
            detector = str(r.get("detector") or "unknown")
            ev = evidence.setdefault(detector, {"windows_scored": 0, "last_probability": None,
                                                "model_versions": []})
            ev["windows_scored"] = max(ev["windows_scored"], int(r.get("windows_scored") or 0))
            ev["last_probability"] = r.get("probability")
            ev["last_interval"] = r.get("interval")
            version = r.get("model_version")
            if isinstance(version, str):
                models.add(version)
                if version not in ev["model_versions"]:
                    ev["model_versions"].append(version)
        elif e.type == "action":
            actions.append({"seq": e.seq, "ts": e.ts, **{k: r.get(k) for k in (
                "kind", "rule", "reason", "state", "at", "leg", "by", "source", "text")}})
        elif e.type == "feedback":
            feedback.append({"seq": e.seq, "ts": e.ts, **r})
        elif e.type == "call_started":
            started = {"seq": e.seq, "ts": e.ts, "protocol": r.get("protocol"),
                       "legs": r.get("legs")}
        elif e.type == "call_ended":
            ended = {"seq": e.seq, "ts": e.ts, "reason": r.get("reason")}
        else:
            other.append({"seq": e.seq, "ts": e.ts, "type": e.type, "record": r})
    out: dict[str, Any] = {
        "session": call_id, "tenant": tenant, "live": bridge is not None,
        "started": started, "ended": ended, "timeline": timeline, "actions": actions,
        "evidence": evidence, "model_versions": sorted(models), "feedback": feedback,
        "events": other[-100:],
    }
    if bridge is not None:
        out["legs"] = live_dict(bridge)["legs"]
    return out


def openapi_schema(endpoints: list[tuple[Endpoint, Handler]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    error = {"description": "error", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}
    for endpoint, _ in endpoints:
        op: dict[str, Any] = {
            "summary": endpoint.summary,
            "description": f"Requires role `{endpoint.role}` or higher.",
            "security": [{"bearer": []}],
            "responses": {"200": {"description": "OK"}, "401": error, "403": error,
                          "429": error},
        }
        params = [{"name": part[1:-1], "in": "path", "required": True,
                   "schema": {"type": "string"}}
                  for part in endpoint.path.split("/") if part.startswith("{")]
        params.append({"name": "tenant", "in": "query", "required": False,
                       "schema": {"type": "string"},
                       "description": "super admin only: the tenant to act on"})
        op["parameters"] = params
        if endpoint.body:
            op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
            op["responses"].update({"400": error, "413": error, "422": error})
        paths.setdefault(f"/api/v1{endpoint.path}", {})[endpoint.method.lower()] = op
    paths["/api/v1/events"] = {"get": {
        "summary": "Live events WebSocket (upgrade). Query: key, session, since, tenant. "
                   f"Close codes: {CLOSE_UNAUTHORIZED} unauthorized, {CLOSE_FORBIDDEN} "
                   f"forbidden, {CLOSE_SLOW} too slow (resume with since=<last seq>).",
        "responses": {"101": {"description": "switching protocols"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "StreamGuard control plane", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {
                "error": {"type": "string"}}, "required": ["error"]}},
        },
    }
