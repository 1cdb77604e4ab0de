"""``streamguard scan``: per-window timeline and final verdict for each file.

One bad file never stops the others; the exit code is non-zero when any file
failed, so scripts can tell "scanned, all clear" from "could not scan".
"""

from __future__ import annotations

import json
import sys
from typing import Any

from streamguard import Guard, GuardConfig, MediaError
from streamguard.media import decode_file
from streamguard.offline import ScanResult, scan_pcm

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
             "state": v.state.value, "speech_ratio": v.speech_ratio}
            for v in result.verdicts
        ],
    }
    if not result.verdicts:
        record["note"] = "not enough speech to score"
    return record


def print_human(record: dict[str, Any]) -> None:
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


async def run_scan(paths: list[str], config: GuardConfig, *, as_json: bool) -> int:
    failed = 0
    async with Guard.from_config(config) as guard:
        for index, path in enumerate(paths):
            try:
                audio = decode_file(path)
                if audio.duration < MIN_SECONDS:
                    raise MediaError(f"{path}: too short ({audio.duration:.2f} s; "
                                     f"at least {MIN_SECONDS:.0f} s of audio is needed)")
                result = await scan_pcm(guard, f"scan-{index}", audio.pcm, audio.sample_rate)
            except MediaError as exc:
                failed += 1
                if as_json:
                    print(json.dumps({"path": path, "error": str(exc)}), flush=True)
                else:
                    print(f"{path}: error: {exc}", file=sys.stderr)
                continue
            record = result_record(path, result)
            if as_json:
                print(json.dumps(record), flush=True)
            else:
                print_human(record)
    return 1 if failed else 0
