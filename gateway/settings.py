"""Gateway settings with the defaults operators and tests rely on."""

from __future__ import annotations

from dataclasses import dataclass, field

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
