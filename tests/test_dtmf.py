"""DTMF key tones are recognised frame by frame, and speech is not mistaken for them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import webrtcvad

from streamguard.dtmf import HIGH_GROUP_HZ, LOW_GROUP_HZ, DtmfDetector
from streamguard.media import decode_file, ulaw_decode, ulaw_encode
from streamguard.vad import FRAME_SAMPLES, VAD_RATE, SpeechGate

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"


def key_tone(low: float, high: float, seconds: float = 0.1, twist_db: float = 2.0,
             level_dbfs: float = -12.0) -> np.ndarray:
    t = np.arange(int(seconds * VAD_RATE)) / VAD_RATE
    a = 10 ** (level_dbfs / 20) * 32768
    x = a * np.sin(2 * np.pi * low * t) + a * 10 ** (twist_db / 20) * np.sin(2 * np.pi * high * t)
    return np.clip(x, -32768, 32767).astype(np.int16)


def phone_channel(pcm: np.ndarray) -> np.ndarray:
    return ulaw_decode(ulaw_encode(pcm))


@pytest.mark.parametrize("low", LOW_GROUP_HZ)
@pytest.mark.parametrize("high", HIGH_GROUP_HZ)
def test_every_key_is_flagged_through_mulaw(low, high):
    flags = DtmfDetector(VAD_RATE, FRAME_SAMPLES).flags(phone_channel(key_tone(low, high)))
    assert flags.all()


@pytest.mark.parametrize(("drift", "twist_db"), [(1.015, 4.0), (0.985, -4.0), (1.0, 8.0)])
def test_off_nominal_keys_within_q24_tolerances_are_flagged(drift, twist_db):
    tone = key_tone(852.0 * drift, 1477.0 * drift, twist_db=twist_db)
    assert DtmfDetector(VAD_RATE, FRAME_SAMPLES).flags(tone).all()


def test_single_tones_chords_and_quiet_frames_are_not_keys():
    detector = DtmfDetector(VAD_RATE, FRAME_SAMPLES)
    t = np.arange(VAD_RATE // 5) / VAD_RATE
    single = (8000 * np.sin(2 * np.pi * 770 * t)).astype(np.int16)
    # A C-major chord: three tones, none on the DTMF grid.
    chord = sum(5000 * np.sin(2 * np.pi * f * t) for f in (523.3, 659.3, 784.0)).astype(np.int16)
    quiet = key_tone(697.0, 1209.0, seconds=0.2, level_dbfs=-70.0)
    for pcm in (single, chord, quiet, np.zeros(VAD_RATE // 5, np.int16)):
        assert not detector.flags(pcm).any()


def test_gate_drops_key_frames_that_the_vad_alone_passes():
    tone = key_tone(941.0, 1336.0, seconds=0.5)
    vad = webrtcvad.Vad(2)
    raw = [tone[i:i + FRAME_SAMPLES].tobytes() for i in range(0, len(tone), FRAME_SAMPLES)]
    assert sum(vad.is_speech(f, VAD_RATE) for f in raw if len(f) == 2 * FRAME_SAMPLES) > 10
    gate = SpeechGate(2)
    frames, flags = gate.push(tone[:1000])
    more, more_flags = gate.push(tone[1000:])
    assert len(frames) + len(more) == (len(tone) // FRAME_SAMPLES) * FRAME_SAMPLES
    assert not flags.any() and not more_flags.any()


@pytest.mark.skipif(not SPEECH.exists(), reason="needs ../shared/data/speech")
def test_speech_frames_are_never_taken_for_keys():
    with (SPEECH / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))[::5]
    detector = DtmfDetector(VAD_RATE, FRAME_SAMPLES)
    speech_frames = flagged = 0
    for row in rows:
        pcm = decode_file(SPEECH / row["path"]).pcm
        for channel in (pcm, phone_channel(pcm)):
            _, voiced = SpeechGate(2).push(channel)
            keys = detector.flags(channel)[: len(voiced)]
            speech_frames += int(voiced.sum())
            flagged += int((voiced & keys).sum())
    assert speech_frames > 5000
    assert flagged <= speech_frames // 1000, (flagged, speech_frames)
