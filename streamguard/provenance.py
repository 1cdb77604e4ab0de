"""C2PA provenance of media files (images, audio, video), read with ``c2pa-python``.

:func:`read_provenance` validates the manifest store embedded in a file and
reports the claim generator, the signer (issuer and common name from the
signing certificate), the validation state and failures, and whether the
active manifest declares a generative-AI digital source type (IPTC
``trainedAlgorithmicMedia``, ``compositeWithTrainedAlgorithmicMedia``,
``algorithmicMedia``) in an action's ``digitalSourceType``. Ingredients'
manifests are checked too and reported separately.

States: ``trusted`` (valid, signer chains to a trust anchor given here),
``valid`` (signature and hashes check out, signer not on a trust list: anyone
can make such a certificate, so this is *declared*, not *vouched for*),
``invalid`` (tampered or broken), ``absent`` (no manifest).

Hostile input: files over :data:`MAX_FILE_BYTES` are refused before parsing,
manifest JSON over :data:`MAX_MANIFEST_JSON` is refused, the walk over the
JSON is bounded in depth and items, remote manifests and OCSP are not
fetched, and every library error becomes a :class:`ProvenanceError` with the
file name. ``c2pa-python`` is imported lazily (the ``c2pa`` extra).
"""

from __future__ import annotations

import importlib
import json
import mimetypes
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamguard.errors import MediaError

__all__ = [
    "AI_SOURCE_TYPES",
    "Provenance",
    "ProvenanceError",
    "ProvenanceUnavailable",
    "read_provenance",
]

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia",
                             "algorithmicMedia"})
MAX_FILE_BYTES = 2 * 1024**3
MAX_MANIFEST_JSON = 16 * 1024**2
MAX_WALK_ITEMS = 200_000
MAX_WALK_DEPTH = 64
UNTRUSTED = "signingCredential.untrusted"


class ProvenanceError(MediaError):
    """The file's provenance could not be read (corrupt, hostile or unsupported)."""


class ProvenanceUnavailable(ProvenanceError):
    """``c2pa-python`` (the ``c2pa`` extra) is not installed."""


@dataclass(frozen=True, slots=True)
class Provenance:
    state: str  # trusted | valid | invalid | absent
    claim_generator: str | None = None
    signer: dict[str, str | None] = field(default_factory=dict)
    title: str | None = None
    ai_generated: bool = False
    digital_source_types: tuple[str, ...] = ()
    ai_in_ingredients: bool = False
    errors: tuple[dict[str, str], ...] = ()
    manifests: int = 0

    @property
    def present(self) -> bool:
        return self.state != "absent"

    @property
    def declares_ai(self) -> bool:
        """A valid (or trusted) manifest declaring generative-AI origin."""
        return self.state in ("valid", "trusted") and self.ai_generated

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "claim_generator": self.claim_generator,
                "signer": self.signer or None, "title": self.title,
                "ai_generated": self.ai_generated,
                "digital_source_types": list(self.digital_source_types),
                "ai_in_ingredients": self.ai_in_ingredients, "errors": list(self.errors),
                "manifests": self.manifests}


def _c2pa() -> Any:
    try:
        c2pa = importlib.import_module("c2pa")
    except ImportError as exc:
        raise ProvenanceUnavailable(
            f"reading C2PA manifests needs the 'c2pa' extra (pip install 'streamguard[c2pa]'): "
            f"{exc}") from exc
    return c2pa


def _walk(node: Any, depth: int = 0, budget: list[int] | None = None) -> Iterator[tuple[str, Any]]:
    """(key, value) pairs of nested dicts/lists, bounded in depth and item count."""
    budget = budget if budget is not None else [MAX_WALK_ITEMS]
    if depth > MAX_WALK_DEPTH:
        return
    items: Any = node.items() if isinstance(node, dict) else (
        (None, v) for v in node) if isinstance(node, list) else ()
    for key, value in items:
        budget[0] -= 1
        if budget[0] < 0:
            return
        if key is not None:
            yield str(key), value
        if isinstance(value, dict | list):
            yield from _walk(value, depth + 1, budget)


def _source_types(manifest: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict):
            continue
        for key, value in _walk(assertion.get("data")):
            if key == "digitalSourceType" and isinstance(value, str) and value not in found:
                found.append(value[:500])
    return found


def _is_ai(types: list[str]) -> bool:
    return any(t.rstrip("/").rsplit("/", 1)[-1] in AI_SOURCE_TYPES for t in types)


def _generator(manifest: dict[str, Any]) -> str | None:
    if isinstance(manifest.get("claim_generator"), str):
        return str(manifest["claim_generator"])[:300]
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name = info[0].get("name")
        version = info[0].get("version")
        if isinstance(name, str):
            return (f"{name} {version}" if isinstance(version, str) else name)[:300]
    return None


def _text(value: Any) -> str | None:
    return str(value)[:300] if isinstance(value, str | int) else None


def _context(c2pa: Any, trust_anchors: str | None) -> Any:
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors}
    return c2pa.Context.from_dict(settings)


def read_provenance(path: str | Path, *, trust_anchors: str | None = None,
                    max_bytes: int = MAX_FILE_BYTES) -> Provenance:
    """Validate the C2PA manifest store of ``path``; ``trust_anchors``: PEM root certificates."""
    name = Path(path).name
    try:
        size = os.stat(path).st_size
    except FileNotFoundError as exc:
        raise ProvenanceError(f"{name}: no such file") from exc
    except OSError as exc:
        raise ProvenanceError(f"{name}: cannot be read ({exc})") from exc
    if Path(path).is_dir():
        raise ProvenanceError(f"{name}: is a directory")
    if size > max_bytes:
        raise ProvenanceError(f"{name}: too large for a provenance check "
                              f"({size} bytes > {max_bytes})")
    if size == 0:
        return Provenance(state="absent")
    c2pa = _c2pa()
    try:
        context = _context(c2pa, trust_anchors)
        with open(path, "rb") as stream:
            mime = mimetypes.guess_type(str(path))[0]  # a hint; None lets the library sniff
            reader = c2pa.Reader.try_create(mime, stream, None, context)
            if reader is None:
                return Provenance(state="absent")
            with reader:
                text = reader.json()
    except c2pa.C2paError as exc:
        message = str(exc)
        if "NotSupported" in type(exc).__name__ or "type is unsupported" in message:
            raise ProvenanceError(f"{name}: format not supported by C2PA ({message[:200]})") \
                from exc
        raise ProvenanceError(f"{name}: C2PA data could not be read ({message[:300]})") from exc
    except (OSError, ValueError, TypeError, MemoryError) as exc:
        raise ProvenanceError(f"{name}: C2PA data could not be read ({exc})") from exc
    if len(text) > MAX_MANIFEST_JSON:
        raise ProvenanceError(f"{name}: C2PA manifest store too large ({len(text)} bytes of "
                              f"JSON > {MAX_MANIFEST_JSON})")
    try:
        store = json.loads(text)
    except ValueError as exc:
        raise ProvenanceError(f"{name}: C2PA manifest store is not valid JSON ({exc})") from exc
    return _summarise(store)


def _summarise(store: Any) -> Provenance:
    if not isinstance(store, dict):
        return Provenance(state="invalid", errors=({"code": "streamguard.malformedStore",
                                                    "explanation": "not a JSON object"},))
    raw = store.get("manifests")
    manifests: dict[str, Any] = raw if isinstance(raw, dict) else {}
    active = manifests.get(str(store.get("active_manifest")))
    statuses = store.get("validation_status") or []
    errors = tuple(
        {"code": str(s.get("code"))[:200], "explanation": str(s.get("explanation") or "")[:300]}
        for s in statuses[:100] if isinstance(s, dict) and s.get("code") != UNTRUSTED)
    untrusted = any(isinstance(s, dict) and s.get("code") == UNTRUSTED for s in statuses)
    reported = str(store.get("validation_state") or "").lower()
    if errors or reported == "invalid" or not isinstance(active, dict):
        state = "invalid"
        if not isinstance(active, dict):
            errors += ({"code": "streamguard.noActiveManifest",
                        "explanation": "the store names no readable active manifest"},)
    elif reported == "trusted" and not untrusted:
        state = "trusted"
    else:
        state = "valid"
    if not isinstance(active, dict):
        return Provenance(state=state, errors=errors, manifests=len(manifests))
    types = _source_types(active)
    ingredient_types = [t for label, m in manifests.items()
                        if label != store.get("active_manifest") and isinstance(m, dict)
                        for t in _source_types(m)]
    raw_sig = active.get("signature_info")
    sig: dict[str, Any] = raw_sig if isinstance(raw_sig, dict) else {}
    signer = {"issuer": _text(sig.get("issuer")), "common_name": _text(sig.get("common_name")),
              "alg": _text(sig.get("alg")), "time": _text(sig.get("time"))}
    return Provenance(state=state, claim_generator=_generator(active),
                      signer={k: v for k, v in signer.items() if v is not None},
                      title=_text(active.get("title")), ai_generated=_is_ai(types),
                      digital_source_types=tuple(types),
                      ai_in_ingredients=_is_ai(ingredient_types), errors=errors,
                      manifests=len(manifests))
