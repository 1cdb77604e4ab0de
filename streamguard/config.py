"""Typed settings for the core, with documented defaults.

Configuration is read once at the edge (CLI, gateway) and passed in; nothing
in the core reads files or environment variables on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from streamguard.disclosure import DeclaredAgent
from streamguard.fusion import FusionConfig
from streamguard.identity import IdentityConfig
from streamguard.policy import DEFAULT_POLICY, Policy
from streamguard.watermark import WatermarkKey
from streamguard.windows import WindowSpec

DEFAULT_MODEL = "voice_clone.onnx"


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a model shipped inside the package (``streamguard/models``)."""
    return Path(str(resources.files("streamguard") / "models" / name))


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Everything a :class:`~streamguard.guard.Guard` needs.

    ``model_path``: an ONNX file with its sidecar JSON; ``None`` uses the
    shipped default. ``max_delay_ms`` is how long a window may wait for a
    fuller batch: 20 ms is small against the 300 ms verdict-lag budget yet
    enough to collect windows from many calls. ``max_pending_per_stream`` = 2
    lets one window queue behind the one being scored; more would only grow
    lag. ``max_gap_seconds``: media gaps up to this are filled with silence,
    longer ones restart windowing at the new timestamp. ``media_batch_ms``:
    media is gathered this long before resampling, VAD and windowing run, so
    their fixed per-call cost is paid five times less often than per 20 ms
    frame; it delays a window's close by at most that much.
    ``watermark_keys``: disclosure watermarks the operator trusts (a voice
    bot's vendor key); a stream carrying a verified one is
    ``disclosed_synthetic`` until ``disclosure_hold_s`` of media pass without
    the mark being verified again (a bot may hand the line to a person).
    ``declared_agents``: AI agents tenants have declared with a consent
    reference; a call whose metadata names one (``ai_agent``) is disclosed.
    ``identity``: the impersonation check's thresholds; it runs only when the
    Guard is given an enrolment store and a call claims an identity.
    ``phase_cue``: fuse the relative-phase cue with the model's score when one
    was fitted for that model (``voice_phase.json`` beside it, as for the
    shipped model); false runs the model alone.
    """

    model_path: Path | None = None
    window: WindowSpec = field(default_factory=WindowSpec)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    policy: Policy = DEFAULT_POLICY
    vad_aggressiveness: int = 2
    max_batch: int = 8
    max_delay_ms: float = 20.0
    max_pending_per_stream: int = 2
    workers: int = 1
    intra_op_threads: int = 1
    max_gap_seconds: float = 2.0
    media_batch_ms: float = 100.0
    watermark_keys: tuple[WatermarkKey, ...] = ()
    disclosure_hold_s: float = 15.0
    declared_agents: tuple[DeclaredAgent, ...] = ()
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    phase_cue: bool = True

    def resolved_model_path(self) -> Path:
        return self.model_path or bundled_model_path()

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> GuardConfig:
        """Build from parsed TOML/JSON; unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown guard settings: {sorted(unknown)}")
        values = dict(data)
        if "model_path" in values and values["model_path"] is not None:
            values["model_path"] = Path(values["model_path"])
        if "window" in values:
            values["window"] = replace(WindowSpec(), **values["window"])
        if "policy" in values:
            values["policy"] = Policy.from_dict(values["policy"])
        if "fusion" in values:
            values["fusion"] = replace(FusionConfig(), **values["fusion"])
        if "identity" in values:
            identity = dict(values["identity"])
            if "claim_keys" in identity:
                identity["claim_keys"] = tuple(identity["claim_keys"])
            values["identity"] = replace(IdentityConfig(), **identity)
        if "declared_agents" in values:
            values["declared_agents"] = tuple(
                DeclaredAgent(str(a["tenant"]), str(a["agent_id"]), str(a["consent_ref"]))
                for a in values["declared_agents"])
        if "watermark_keys" in values:
            values["watermark_keys"] = tuple(
                WatermarkKey(int(k["vendor_id"]), int(k["key_id"]), bytes.fromhex(k["secret_hex"]))
                for k in values["watermark_keys"])
        return cls(**values)
