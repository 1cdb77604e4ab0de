"""``streamguard watermark embed|detect``: the sgwm1 audio watermark from the command line.

Embedding keeps the input's sample rate and writes 16-bit WAV. Detection
reports, per file, whether a mark is *verified* (a key given here matches),
*unknown* (a readable mark from a key we do not hold), *invalid* (claims our
key, keyed chips absent: forged or damaged) or *pending*; only ``verified``
may be trusted. ``detect --own`` adds this installation's disclosure key
(the one that marks the prompts the gateway injects). One bad file never
stops the others; exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path
from typing import Any

import av

from streamguard import MediaError
from streamguard.media import decode_file, float_to_pcm16, pcm16_to_bytes, pcm16_to_float
from streamguard.watermark import WatermarkKey, detect, embed
from streamguard.watermark.audio import DEFAULT_ALPHA_DB

EXIT_OK = 0
EXIT_FILE_FAILED = 1
EXIT_USAGE = 2


def add_watermark_parser(subparsers: Any) -> None:
    wm = subparsers.add_parser("watermark", help="embed or detect the keyed audio watermark")
    wsub = wm.add_subparsers(dest="watermark_command", required=True)

    def key_options(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--vendor", type=int, required=required, help="vendor id (0-255)")
        p.add_argument("--key-id", type=int, required=required, help="key id (0-255)")
        group = p.add_mutually_exclusive_group(required=required)
        group.add_argument("--secret", help="key secret as hex (at least 16 bytes)")
        group.add_argument("--secret-file", type=Path, help="file with the secret (hex or raw)")

    emb = wsub.add_parser("embed", help="write a watermarked copy of an audio file")
    emb.add_argument("input", help="audio file (anything PyAV opens)")
    emb.add_argument("output", type=Path, help="output WAV file")
    emb.add_argument("--strength", type=float, default=DEFAULT_ALPHA_DB,
                     help=f"chip gain in dB (default {DEFAULT_ALPHA_DB})")
    key_options(emb, required=True)

    det = wsub.add_parser("detect", help="look for a watermark in audio files")
    det.add_argument("files", nargs="+", help="audio files")
    det.add_argument("--json", action="store_true", help="JSON Lines, one object per file")
    det.add_argument("--own", action="store_true",
                     help="also verify with this installation's disclosure key (the key that "
                          "marks the prompts the gateway injects: vendor 0, key id 1)")
    key_options(det, required=False)


def _secret(args: argparse.Namespace) -> bytes | None:
    if args.secret is not None:
        return bytes.fromhex(args.secret)
    if args.secret_file is not None:
        raw = Path(args.secret_file).read_bytes()
        try:
            return bytes.fromhex(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return raw
    return None


def _key(args: argparse.Namespace) -> WatermarkKey | None:
    secret = _secret(args)
    if secret is None:
        return None
    if args.vendor is None or args.key_id is None:
        raise ValueError("--vendor and --key-id are needed with a secret")
    return WatermarkKey(args.vendor, args.key_id, secret)


def _source_rate(path: str) -> int:
    try:
        with av.open(path) as container:
            if container.streams.audio:
                rate = int(container.streams.audio[0].codec_context.sample_rate or 0)
                if 8000 <= rate <= 192000:
                    return rate
    except (av.FFmpegError, OSError, ValueError):
        pass  # decode_file below reports the problem with a clear message
    return 16000


def write_wav(path: Path, samples: Any, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm16_to_bytes(float_to_pcm16(samples)))


def run_watermark(args: argparse.Namespace) -> int:
    try:
        key = _key(args)
    except (ValueError, OSError) as exc:
        print(f"streamguard: bad key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.watermark_command == "embed":
        assert key is not None
        try:
            audio = decode_file(args.input, sample_rate=_source_rate(args.input))
            marked = embed(pcm16_to_float(audio.pcm), audio.sample_rate, key,
                           alpha_db=args.strength)
            write_wav(args.output, marked, audio.sample_rate)
        except (MediaError, OSError) as exc:
            print(f"streamguard: {exc}", file=sys.stderr)
            return EXIT_FILE_FAILED
        print(f"{args.output}: marked vendor {key.vendor_id} key {key.key_id} "
              f"({audio.duration:.1f} s at {audio.sample_rate} Hz)")
        return EXIT_OK
    keys = [key] if key else []
    if args.own:
        from gateway.prompts_store import disclosure_key

        try:
            keys.append(disclosure_key())
        except (ValueError, OSError) as exc:
            print(f"streamguard: disclosure key: {exc}", file=sys.stderr)
            return EXIT_USAGE
    failed = 0
    for path in args.files:
        try:
            audio = decode_file(path)
            found = detect(audio.pcm, audio.sample_rate, keys)
        except MediaError as exc:
            failed += 1
            if args.json:
                print(json.dumps({"path": path, "error": str(exc)}), flush=True)
            else:
                print(f"{path}: error: {exc}", file=sys.stderr)
            continue
        record: dict[str, Any] = {"path": path, "duration": round(audio.duration, 3),
                                  "watermark": found.to_dict() if found else None}
        if args.json:
            print(json.dumps(record), flush=True)
        elif found is None:
            print(f"{path}: no watermark ({audio.duration:.1f} s)")
        else:
            who = (f"vendor {found.vendor_id} key {found.key_id}"
                   if found.vendor_id is not None else "payload not decoded")
            print(f"{path}: {found.status.value.upper()} {who}  z={found.score:.1f} "
                  f"(threshold {found.threshold:.1f}, false alarm <= {found.false_alarm:.1e})"
                  f"{'' if found.trusted else '  NOT TRUSTED'}")
    return EXIT_FILE_FAILED if failed else EXIT_OK
