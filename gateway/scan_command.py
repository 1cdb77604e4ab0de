"""``streamguard scan``: per-window timeline and final verdict for each file.

One bad file never stops the others; the exit code is non-zero when any file
failed, so scripts can tell "scanned, all clear" from "could not scan".

Every file also gets ``provenance`` (its C2PA manifest, validated; needs the
``c2pa`` extra; trust anchors from ``$STREAMGUARD_C2PA_TRUST_ANCHORS``, a PEM
file) and, for images and video, ``image_watermark`` (the DWT-DCT mark Stable
Diffusion pipelines embed; needs the ``image`` extra). Image files have no
audio, so they get no voice verdict (``verdict`` is null), only these two.
Video files also get ``faces``: a face-swap timeline and verdict per tracked
face (``face-1``, …) next to the voice timeline of their audio track.
A missing extra is reported in the field (``{"unavailable": ...}``), never as
a failed file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from streamguard import Guard, GuardConfig, MediaError
from streamguard.media import decode_file
from streamguard.offline import ScanResult, scan_pcm
from streamguard.provenance import ProvenanceError, ProvenanceUnavailable, read_provenance
from streamguard.watermark.image import (
    IMAGE_SUFFIXES,
    ImageWatermarkUnavailable,
    probe_image_file,
    probe_video_file,
)

MIN_SECONDS = 1.0


def result_record(path: str, result: ScanResult) -> dict[str, Any]:
    final = result.final
    assert final is not None
    record: dict[str, Any] = {
        "path": path,
        "duration": round(result.duration, 3),
        "verdict": final.state.value,
        "probability": final.probability,
        "interval": list(final.interval) if final.interval else None,
        "model_version": final.model_version,
        "windows": [
            {"start": round(v.start, 3), "end": round(v.end, 3), "score": v.raw_score,
             "probability": v.window_probability, "fused_probability": v.probability,
             "state": v.state.value, "speech_ratio": v.speech_ratio, "phase_z": v.phase_z}
            for v in result.verdicts
        ],
    }
    if not result.verdicts:
        record["note"] = "not enough speech to score"
    return record


def trust_anchors() -> str | None:
    path = os.environ.get("STREAMGUARD_C2PA_TRUST_ANCHORS")
    if not path:
        return None
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def provenance_field(path: str, anchors: str | None) -> dict[str, Any]:
    try:
        return read_provenance(path, trust_anchors=anchors).to_dict()
    except ProvenanceUnavailable as exc:
        return {"unavailable": str(exc)}
    except ProvenanceError as exc:
        return {"state": "error", "error": str(exc)}


def image_watermark_field(path: str, *, image: bool) -> dict[str, Any] | None:
    """The image-watermark probe; None for files without pictures."""
    try:
        result = probe_image_file(path) if image else probe_video_file(path)
    except ImageWatermarkUnavailable as exc:
        return {"unavailable": str(exc)}
    except MediaError as exc:
        return {"error": str(exc)}
    return result.to_dict() if result is not None else None


def image_record(path: str, anchors: str | None) -> dict[str, Any]:
    """An image file: provenance and watermark, no voice verdict. Raises if no pixels."""
    mark = image_watermark_field(path, image=True)
    record: dict[str, Any] = {"path": path, "kind": "image", "verdict": None,
                              "note": "image: no audio, so no voice verdict",
                              "provenance": provenance_field(path, anchors),
                              "image_watermark": mark}
    if mark is not None and "error" in mark and "too small" not in mark["error"]:
        raise MediaError(mark["error"])
    return record


def silent_video_record(path: str, anchors: str | None,
                        faces: FaceScanner) -> dict[str, Any] | None:
    """A video without audio: faces, provenance and watermark; None when it has no video."""
    mark = image_watermark_field(path, image=False)
    if mark is None or "error" in mark:
        return None
    return {"path": path, "kind": "video", "verdict": None,
            "note": "video without audio, so no voice verdict", "faces": faces.field(path),
            "provenance": provenance_field(path, anchors), "image_watermark": mark}


class FaceScanner:
    """Face-swap timeline per tracked face of a video file; models load on first use."""

    def __init__(self) -> None:
        self._models: tuple[Any, Any] | None = None
        self._unavailable: str | None = None

    def field(self, path: str) -> dict[str, Any] | None:
        """``{"participants": {face id: {...}}}``, ``{"unavailable": ...}``, or None
        for a file without pictures."""
        from streamguard.errors import ModelError
        from streamguard.offline_video import scan_video_faces

        if self._unavailable is not None:
            return {"unavailable": self._unavailable}
        try:
            if self._models is None:
                from streamguard.detectors.face import FaceDetector
                from streamguard.detectors.face_swap import FaceSwapDetector

                self._models = (FaceDetector(), FaceSwapDetector())
            windows = scan_video_faces(path, detector=self._models[0],
                                       classifier=self._models[1])
        except ModelError as exc:
            self._unavailable = str(exc)
            return {"unavailable": self._unavailable}
        except MediaError:
            return None  # no video stream: an audio file
        participants: dict[str, dict[str, Any]] = {}
        for w in windows:
            entry = participants.setdefault(w.participant, {"windows": []})
            entry["windows"].append({
                "start": round(w.start, 3), "end": round(w.end, 3), "frames": w.frames,
                "probability": w.window_probability, "fused_probability": w.probability,
                "state": w.state.value})
            entry.update(verdict=w.state.value, probability=w.probability,
                         interval=list(w.interval), model_version=w.model_version)
        return {"detector": "face_swap", "participants": participants}


def print_faces(record: dict[str, Any]) -> None:
    faces = record.get("faces")
    if faces is None:
        return
    if "unavailable" in faces:
        print(f"  faces: not checked ({faces['unavailable']})")
        return
    if not faces["participants"]:
        print("  faces: none found")
    for name, entry in faces["participants"].items():
        for w in entry["windows"]:
            print(f"  face {name:<8} {w['start']:7.2f}–{w['end']:7.2f} s  "
                  f"p(window)={w['probability']:.2f}  p={w['fused_probability']:.2f}  "
                  f"{w['state']}")
        low, high = entry["interval"]
        print(f"  face {name:<8} verdict: {entry['verdict'].upper()}  P(swapped)="
              f"{entry['probability']:.2f} [{low:.2f}, {high:.2f}]  "
              f"model {entry['model_version']}")


def print_extras(record: dict[str, Any]) -> None:
    print_faces(record)
    prov = record.get("provenance") or {}
    if "unavailable" in prov:
        print(f"  provenance: not checked ({prov['unavailable']})")
    elif prov.get("state") == "error":
        print(f"  provenance: error: {prov.get('error')}")
    elif prov.get("state") == "absent":
        print("  provenance: no C2PA manifest")
    elif prov:
        signer = prov.get("signer") or {}
        errors = ", ".join(e["code"] for e in prov.get("errors") or [])
        print(f"  provenance: C2PA {prov['state'].upper()} by {prov.get('claim_generator')} "
              f"(signer {signer.get('common_name')} / {signer.get('issuer')})"
              f"{'  declares GENERATIVE AI' if prov.get('ai_generated') else ''}"
              f"{'  errors: ' + errors if errors else ''}")
    mark = record.get("image_watermark")
    if mark is None:
        return
    if "unavailable" in mark or "error" in mark:
        print(f"  image watermark: not checked ({mark.get('unavailable') or mark.get('error')})")
    elif mark["detected"]:
        print(f"  image watermark: {mark['mark']} DETECTED ({mark['generator']}; "
              f"{mark['bit_errors']}/{mark['bits']} bit errors, false alarm <= "
              f"{mark['false_alarm']:.1e}, {mark['frames']} frame(s))")
    else:
        print(f"  image watermark: none found (best {mark['best_match']}: "
              f"{mark['bit_errors']}/{mark['bits']} bit errors)")


def print_human(record: dict[str, Any]) -> None:
    if record.get("kind") in ("image", "video"):
        print(f"{record['path']}  ({record['kind']}; no audio, no voice verdict)")
        print_extras(record)
        return
    print(f"{record['path']}  ({record['duration']:.1f} s, {len(record['windows'])} windows)")
    for w in record["windows"]:
        print(f"  {w['start']:7.2f}–{w['end']:7.2f} s  score {w['score']:+7.2f}  "
              f"p(window)={w['probability']:.2f}  p={w['fused_probability']:.2f}  {w['state']}")
    if record["probability"] is None:
        print(f"  verdict: {record['verdict'].upper()} ({record.get('note')})")
    else:
        low, high = record["interval"]
        print(f"  verdict: {record['verdict'].upper()}  P(synthetic)={record['probability']:.2f} "
              f"[{low:.2f}, {high:.2f}]  model {record['model_version']}")
    print_extras(record)


async def run_scan(paths: list[str], config: GuardConfig, *, as_json: bool) -> int:
    failed = 0
    anchors = trust_anchors()
    faces = FaceScanner()
    async with Guard.from_config(config) as guard:
        for index, path in enumerate(paths):
            try:
                if Path(path).suffix.lower() in IMAGE_SUFFIXES:
                    record = image_record(path, anchors)
                    if as_json:
                        print(json.dumps(record), flush=True)
                    else:
                        print_human(record)
                    continue
                audio = decode_file(path)
                if audio.duration < MIN_SECONDS:
                    raise MediaError(f"{path}: too short ({audio.duration:.2f} s; "
                                     f"at least {MIN_SECONDS:.0f} s of audio is needed)")
                result = await scan_pcm(guard, f"scan-{index}", audio.pcm, audio.sample_rate)
            except MediaError as exc:
                silent = silent_video_record(path, anchors, faces) if "no audio stream" in str(
                    exc) else None
                if silent is not None:
                    if as_json:
                        print(json.dumps(silent), flush=True)
                    else:
                        print_human(silent)
                    continue
                failed += 1
                if as_json:
                    print(json.dumps({"path": path, "error": str(exc)}), flush=True)
                else:
                    print(f"{path}: error: {exc}", file=sys.stderr)
                continue
            record = result_record(path, result)
            record["faces"] = faces.field(path)
            record["provenance"] = provenance_field(path, anchors)
            record["image_watermark"] = image_watermark_field(path, image=False)
            if as_json:
                print(json.dumps(record), flush=True)
            else:
                print_human(record)
    return 1 if failed else 0
