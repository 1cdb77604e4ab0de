"""sgwm1 audio watermark: payload roundtrip, channel robustness, keys, false alarms, CLI.

Robustness here is checked on one marked corpus clip per transform; rates
over the whole corpus are measured by ``python -m bench.watermark``.
"""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from bench.watermark import noise, opus, resample, shift, ulaw_8k
from gateway.cli import main
from streamguard import MediaError
from streamguard.media import decode_file
from streamguard.watermark import (
    Status,
    WatermarkDetector,
    WatermarkKey,
    detect,
    embed,
    false_alarm_bound,
    threshold_for,
)
from streamguard.watermark import audio as wm

from .conftest import SPEECH

KEY = WatermarkKey(42, 7, bytes.fromhex("00112233445566778899aabbccddeeff"))
OTHER = WatermarkKey(42, 7, bytes.fromhex("ffeeddccbbaa99887766554433221100"))
RATE = 16000

needs_corpus = pytest.mark.skipif(not SPEECH.exists(), reason="shared speech corpus missing")


def clip(name: str) -> np.ndarray:
    return decode_file(SPEECH / name).pcm.astype(np.float64) / 32768.0


@pytest.fixture(scope="module")
def host() -> np.ndarray:
    # 10 s of read speech (one speaker, two utterances): short clips are measured in the bench.
    return np.concatenate([clip("bonafide/1688-142285-0003.flac"),
                           clip("bonafide/1688-142285-0004.flac")])


@pytest.fixture(scope="module")
def marked(host: np.ndarray) -> np.ndarray:
    return embed(host, RATE, KEY).astype(np.float64)


def test_key_validation() -> None:
    with pytest.raises(ValueError):
        WatermarkKey(256, 0, b"x" * 16)
    with pytest.raises(ValueError):
        WatermarkKey(1, 1, b"short")
    assert "0011" not in repr(KEY) and "secret" not in repr(KEY)


def test_payload_code_roundtrip_exact() -> None:
    for payload in (0, 1, 0x2A07, 0xFFFF, 0x8001):
        decoded, z = wm.decode_payload(wm.payload_chips(payload))
        assert decoded == payload
        assert z == pytest.approx(np.sqrt(wm.N_PAYLOAD))


@needs_corpus
def test_embed_is_mild_and_detected_with_payload(host: np.ndarray, marked: np.ndarray) -> None:
    assert marked.shape == host.shape
    snr = 10 * np.log10(np.sum(host ** 2) / np.sum((marked - host) ** 2))
    assert 10.0 < snr < 20.0  # ±2.5 dB cell gains; perceptual score in the bench
    found = detect(marked, RATE, [KEY])
    assert found is not None and found.status is Status.VERIFIED and found.trusted
    assert (found.vendor_id, found.key_id) == (42, 7)
    assert found.score >= found.threshold and found.false_alarm < 1e-6
    # The public layer alone decodes the same ids (blind, no key).
    blind = detect(marked, RATE, [])
    assert blind is not None and blind.status is Status.UNKNOWN and not blind.trusted
    assert (blind.vendor_id, blind.key_id) == (42, 7)


CHANNELS = {
    "ulaw_8k": ulaw_8k,
    "opus_16kbps": opus,
    "resample_44k1": lambda x: resample(resample(x, RATE, 44100), 44100, RATE),
    "gain_-20dB": lambda x: x * 0.1,
    "noise_20dB": noise,
    "shift_10ms": lambda x: shift(x, 10),
    "shift_50ms": lambda x: shift(x, 50),
}


@needs_corpus
@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_survives_channel(marked: np.ndarray, channel: str) -> None:
    found = detect(CHANNELS[channel](marked), RATE, [KEY])
    assert found is not None, channel
    assert found.status is Status.VERIFIED
    assert (found.vendor_id, found.key_id) == (42, 7)


@needs_corpus
def test_detects_at_8k_input_rate(marked: np.ndarray) -> None:
    narrow = resample(marked, RATE, 8000)
    found = detect(narrow, 8000, [KEY])
    assert found is not None and found.status is Status.VERIFIED


@needs_corpus
def test_wrong_secret_does_not_verify(marked: np.ndarray) -> None:
    found = detect(marked, RATE, [OTHER])
    # Same ids, other secret: the public claim is read but the keyed chips are absent.
    assert found is not None and found.status is Status.INVALID and not found.trusted
    other_ids = WatermarkKey(9, 9, OTHER.secret)
    found = detect(marked, RATE, [other_ids])
    assert found is not None and found.status is Status.UNKNOWN
    assert (found.vendor_id, found.key_id) == (42, 7)


@needs_corpus
def test_public_only_forgery_is_not_verified(host: np.ndarray) -> None:
    # A forger copies the public layer (sync + payload) but cannot make the keyed chips.
    forged_key = WatermarkKey(42, 7, b"\x00" * 16)
    forged = embed(host, RATE, forged_key).astype(np.float64)
    found = detect(forged, RATE, [KEY])
    assert found is not None and found.status is Status.INVALID


@needs_corpus
@pytest.mark.parametrize("name", ["bonafide/1998-15444-0000.flac",
                                  "spoof_piper/" , "spoof_espeak/"])
def test_unmarked_corpus_is_not_detected(name: str) -> None:
    paths = ([SPEECH / name] if name.endswith(".flac")
             else sorted((SPEECH / name).glob("*.flac"))[:4])
    for path in paths:
        x = decode_file(path).pcm
        assert detect(x, RATE, [KEY]) is None, path


def test_noise_and_silence_not_detected() -> None:
    rng = np.random.default_rng(3)
    assert detect(rng.normal(0, 0.1, 4 * RATE), RATE, [KEY]) is None
    assert detect(np.zeros(3 * RATE, dtype=np.int16), RATE, [KEY]) is None


def test_too_short_audio_is_a_clear_error() -> None:
    with pytest.raises(MediaError, match="too short"):
        detect(np.zeros(RATE // 2, dtype=np.int16), RATE, [KEY])
    det = WatermarkDetector([KEY], RATE)
    assert det.push(np.zeros(RATE // 2, dtype=np.int16)) is None
    assert det.evaluate() is None


def test_bad_input_rejected() -> None:
    with pytest.raises(MediaError):
        embed(np.zeros((2, 100)), RATE, KEY)
    with pytest.raises(MediaError):
        detect(np.zeros(RATE * 2, dtype=np.int32), RATE, [KEY])


def test_threshold_theory() -> None:
    t = threshold_for(wm.OFFSETS)
    assert false_alarm_bound(t, wm.OFFSETS) == pytest.approx(1e-6)
    det = WatermarkDetector([KEY], RATE)
    joint = false_alarm_bound(wm.PUBLIC_MIN, wm.OFFSETS) * false_alarm_bound(det.key_threshold, 1)
    assert joint <= 1e-6 and det.key_threshold >= wm.AUTH_MIN


@needs_corpus
def test_streaming_finds_mark_within_two_seconds(host: np.ndarray) -> None:
    # Unmarked speech first, then the bot's marked speech, as 20 ms μ-law-ish PCM16 chunks.
    marked = embed(clip("spoof_piper/" + sorted(p.name for p in (SPEECH / "spoof_piper")
                                                .glob("*.flac"))[0]), RATE, KEY)
    stream = np.concatenate([host[: 3 * RATE], marked])
    pcm = np.clip(np.round(stream * 32768), -32768, 32767).astype(np.int16)
    det = WatermarkDetector([KEY], RATE, window_seconds=3.0)
    reports = []
    for i in range(0, len(pcm), 320):
        found = det.push(pcm[i:i + 320])
        if found is not None:
            reports.append((det.seconds, found))
    assert reports, "mark never reported"
    at, first = reports[0]
    assert first.status is Status.VERIFIED and (first.vendor_id, first.key_id) == (42, 7)
    assert 3.0 < at <= 3.0 + 2.5


@needs_corpus
def test_streaming_8k_ulaw_call(marked: np.ndarray) -> None:
    narrow = resample(ulaw_8k(marked), RATE, 8000)
    det = WatermarkDetector([KEY], 8000)
    found = None
    for i in range(0, len(narrow), 160):
        found = det.push(narrow[i:i + 160]) or found
    assert found is not None and found.status is Status.VERIFIED


def write_wav(path, x: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes())


@needs_corpus
def test_cli_embed_detect_roundtrip(tmp_path, host: np.ndarray, capsys) -> None:
    src = tmp_path / "in.wav"
    write_wav(src, host)
    out = tmp_path / "out.wav"
    secret = "00112233445566778899aabbccddeeff"
    assert main(["watermark", "embed", str(src), str(out), "--vendor", "42", "--key-id", "7",
                 "--secret", secret]) == 0
    capsys.readouterr()
    keyfile = tmp_path / "k.hex"
    keyfile.write_text(secret + "\n")
    code = main(["watermark", "detect", str(out), str(src), str(tmp_path / "nope.wav"),
                 "--json", "--vendor", "42", "--key-id", "7", "--secret-file", str(keyfile)])
    assert code == 1  # the missing file
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["watermark"]["status"] == "verified"
    assert lines[0]["watermark"]["trusted"] is True
    assert lines[1]["watermark"] is None
    assert "error" in lines[2]
    assert main(["watermark", "detect", str(out)]) == 0
    assert "UNKNOWN vendor 42 key 7" in capsys.readouterr().out
