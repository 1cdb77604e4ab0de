"""Landmark fingerprints: robust to the phone channel, specific to the audio, chunk-invariant."""

from __future__ import annotations

import numpy as np
import pytest

from streamguard.fingerprint import (
    FRAME_SECONDS,
    Fingerprint,
    Fingerprinter,
    FingerprintIndex,
    StreamingFingerprinter,
    match,
)
from streamguard.media import StreamResampler, decode_file, ulaw_decode, ulaw_encode
from tests.conftest import SPEECH

pytestmark = pytest.mark.skipif(not SPEECH.exists(), reason="shared speech corpus missing")

CLIPS = ["spoof_piper/piper_001.flac", "bonafide/1688-142285-0003.flac",
         "spoof_espeak/espeak_002.flac"]
OTHERS = ["spoof_piper/piper_010.flac", "spoof_piper/piper_027.flac",
          "bonafide/2033-164914-0001.flac", "bonafide/2609-156975-0000.flac",
          "spoof_espeak/espeak_013.flac", "spoof_espeak/espeak_020.flac"]


def load(rel: str) -> np.ndarray:
    return decode_file(SPEECH / rel).pcm


def phone(pcm: np.ndarray, *, gain: float = 1.0, shift_ms: float = 0.0,
          snr_db: float | None = None, seed: int = 0) -> np.ndarray:
    """Level change, leading shift, white noise, then 8 kHz G.711 μ-law."""
    x = pcm.astype(np.float64) * gain
    x = np.concatenate([np.zeros(int(16 * shift_ms)), x])
    if snr_db is not None:
        rng = np.random.default_rng(seed)
        x = x + rng.normal(0.0, np.sqrt(np.mean(x ** 2) / 10 ** (snr_db / 10)), len(x))
    pcm16 = np.clip(x, -32768, 32767).astype(np.int16)
    down = StreamResampler(16000, 8000)
    narrow = np.concatenate([down.push(pcm16), down.flush()])
    return ulaw_decode(ulaw_encode(narrow))


@pytest.fixture(scope="module")
def fingerprints() -> dict[str, Fingerprint]:
    fpr = Fingerprinter()
    return {rel: fpr.fingerprint(load(rel), 16000) for rel in CLIPS + OTHERS}


CONDITIONS = {
    "ulaw": {},
    "quiet_-20dB": {"gain": 0.1},
    "loud_+6dB": {"gain": 2.0},
    "shift_10ms": {"shift_ms": 10},
    "shift_23ms": {"shift_ms": 23},
    "shift_50ms": {"shift_ms": 50},
    "noise_20dB": {"snr_db": 20},
    "noise_15dB": {"snr_db": 15},
    "all_at_once": {"gain": 0.3, "shift_ms": 37, "snr_db": 15},
}


@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_same_clip_survives_the_phone_channel(fingerprints: dict[str, Fingerprint],
                                              condition: str) -> None:
    for rel in CLIPS:
        degraded = Fingerprinter().fingerprint(phone(load(rel), **CONDITIONS[condition]), 8000)
        score = match(degraded, fingerprints[rel])
        assert score.is_match(), (rel, condition, score)
        assert score.aligned >= 40 and score.score >= 0.15, (rel, condition, score)
        shift = CONDITIONS[condition].get("shift_ms", 0.0) / 1000
        assert abs(score.offset_s + shift) <= 2 * FRAME_SECONDS, (rel, condition, score)


def test_different_sentences_do_not_match(fingerprints: dict[str, Fingerprint]) -> None:
    names = CLIPS + OTHERS
    worst = max((match(fingerprints[a], fingerprints[b]).aligned, a, b)
                for i, a in enumerate(names) for b in names[i + 1:])
    assert worst[0] < 10, worst
    for a in names:
        for b in names:
            if a != b:
                assert not match(fingerprints[a], fingerprints[b]).is_match(), (a, b)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_streaming_equals_batch(rate: int) -> None:
    pcm = np.concatenate([load(CLIPS[0]), load(CLIPS[1])])
    pcm = pcm if rate == 16000 else phone(pcm)
    batch = Fingerprinter().fingerprint(pcm, rate)
    stream = StreamingFingerprinter(rate)
    rng = np.random.default_rng(3)
    pushed = []
    i = 0
    while i < len(pcm):
        n = int(rng.integers(1, 1200))
        pushed.append(stream.push(pcm[i:i + n]))
        i += n
    pushed.append(stream.flush())
    live = stream.fingerprint
    assert len(batch) > 500
    np.testing.assert_array_equal(live.hashes, batch.hashes)
    np.testing.assert_array_equal(live.times, batch.times)
    assert sum(len(p) for p in pushed) == len(batch)
    assert live.n_peaks == batch.n_peaks and live.duration_s == pytest.approx(batch.duration_s)
    # Hashes become final while the call is still going, not only at the end.
    assert sum(len(p) for p in pushed[: len(pushed) // 2]) > 0


def test_float_input_and_bad_input() -> None:
    pcm = load(CLIPS[0])
    as_int = Fingerprinter().fingerprint(pcm, 16000)
    as_float = Fingerprinter().fingerprint(pcm.astype(np.float32) / 32768, 16000)
    np.testing.assert_array_equal(as_int.hashes, as_float.hashes)
    assert len(Fingerprinter().fingerprint(np.zeros(16000, np.int16), 16000)) == 0
    with pytest.raises(ValueError, match="8000 or 16000"):
        StreamingFingerprinter(44100)
    with pytest.raises(ValueError, match="mono"):
        Fingerprinter().fingerprint(np.zeros((2, 800), np.int16), 8000)
    with pytest.raises(ValueError, match="NaN"):
        Fingerprinter().fingerprint(np.full(8000, np.nan), 8000)
    stream = StreamingFingerprinter(8000)
    stream.flush()
    with pytest.raises(ValueError, match="flushed"):
        stream.push(np.zeros(10, np.int16))


def test_index_finds_a_replayed_recording_inside_a_longer_call(
        fingerprints: dict[str, Fingerprint]) -> None:
    index = FingerprintIndex(window_s=600)
    for t, rel in enumerate(OTHERS):
        index.add(rel, fingerprints[rel], at_time=float(t))
    index.add("script", fingerprints[CLIPS[0]], at_time=10.0)
    # A later call: 2.5 s of other speech, then the recording, through the phone channel.
    call = np.concatenate([load(OTHERS[2])[:40000], load(CLIPS[0]), load(OTHERS[5])])
    fp = Fingerprinter().fingerprint(phone(call, gain=0.5, snr_db=20), 8000)
    found = index.query(fp)
    assert found[0].call_id == "script" and found[0].aligned >= 50
    assert found[0].offset_s == pytest.approx(-2.5, abs=2 * FRAME_SECONDS)
    # The other two clips are in the call too (cut / whole), so they may match; the
    # unrelated ones must not.
    assert {m.call_id for m in found} <= {"script", OTHERS[2], OTHERS[5]}
    # Expiry by time window and explicit removal.
    index.add("late", fingerprints[CLIPS[1]], at_time=609.0)
    assert "script" in index and OTHERS[0] not in index
    assert index.remove("script") and "script" not in index
    assert all(m.call_id != "script" for m in index.query(fp))
    assert index.expire(before=1e9) and len(index) == 0
