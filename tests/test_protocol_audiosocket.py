"""Asterisk AudioSocket: type-length-value frames over a TCP byte stream,
split wherever TCP likes, and every malformed frame we can think of."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from gateway.protocols.audiosocket import (
    MAX_BUFFERED_BYTES,
    MAX_NONFATAL_VIOLATIONS,
    MAX_PAYLOAD_BYTES,
    AudioSocketConnection,
    AudioSocketState,
)
from gateway.protocols.events import (
    AudioReceived,
    CallEnded,
    CallStarted,
    DtmfReceived,
    ProtocolViolation,
)

CALL = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
UUID_FRAME = b"\x01\x00\x10" + CALL.bytes
PCM = (np.arange(160, dtype=np.int16) - 80) * 300
AUDIO_FRAME = b"\x10\x01\x40" + PCM.astype("<i2").tobytes()  # 320 bytes = 20 ms
DTMF_FRAME = b"\x03\x00\x01" + b"5"
HANGUP_FRAME = b"\x00\x00\x00"
STREAM = UUID_FRAME + AUDIO_FRAME + DTMF_FRAME + AUDIO_FRAME + HANGUP_FRAME


def streaming() -> AudioSocketConnection:
    conn = AudioSocketConnection()
    conn.receive_data(UUID_FRAME)
    return conn


def only_violation(events: list[object], *, fatal: bool) -> ProtocolViolation:
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, ProtocolViolation)
    assert event.fatal is fatal
    return event


def summary(events: list[object]) -> list[tuple[object, ...]]:
    """Comparable form of events (AudioReceived holds an array)."""
    out: list[tuple[object, ...]] = []
    for e in events:
        if isinstance(e, AudioReceived):
            out.append(("audio", e.leg, e.pts, e.sample_rate, e.pcm.tobytes()))
        else:
            out.append((e,))
    return out


# --------------------------------------------------------------- happy path


def test_a_whole_call_in_one_read():
    conn = AudioSocketConnection()
    events = conn.receive_data(STREAM)
    start, first, dtmf, second, end = events
    assert start == CallStarted(call_id=str(CALL), legs=("caller",), sample_rate=8000,
                                encoding="L16", parameters={})
    assert isinstance(first, AudioReceived) and isinstance(second, AudioReceived)
    assert (first.leg, first.pts, first.sample_rate) == ("caller", 0, 8000)
    np.testing.assert_array_equal(first.pcm, PCM)
    assert second.pts == 160
    assert dtmf == DtmfReceived("5")
    assert end == CallEnded("hangup")
    assert conn.state is AudioSocketState.CLOSED
    assert conn.call_id == str(CALL)
    assert conn.receive_data(AUDIO_FRAME) == []  # after hang-up: ignored
    assert conn.buffered_bytes == 0


def test_split_at_every_byte_boundary_gives_the_same_events():
    expected = summary(AudioSocketConnection().receive_data(STREAM))
    for cut in range(len(STREAM) + 1):
        conn = AudioSocketConnection()
        events = conn.receive_data(STREAM[:cut])
        assert conn.buffered_bytes <= MAX_BUFFERED_BYTES
        events += conn.receive_data(STREAM[cut:])
        assert summary(events) == expected, cut


def test_one_byte_at_a_time():
    expected = summary(AudioSocketConnection().receive_data(STREAM))
    conn = AudioSocketConnection()
    events: list[object] = []
    for i in range(len(STREAM)):
        events += conn.receive_data(STREAM[i:i + 1])
    assert summary(events) == expected


def test_outgoing_frames_byte_for_byte():
    conn = streaming()
    pcm = np.arange(250, dtype=np.int16)
    raw = pcm.astype("<i2").tobytes()
    assert conn.audio_frames(pcm) == (b"\x10\x01\x40" + raw[:320]
                                      + b"\x10\x00\xb4" + raw[320:])
    assert conn.audio_frames(np.zeros(0, dtype=np.int16)) == b""
    assert conn.hangup_frame() == b"\x00\x00\x00"


def test_outgoing_audio_round_trips():
    pcm = np.tile(PCM, 5)
    conn = streaming()
    events = conn.receive_data(AudioSocketConnection().audio_frames(pcm))
    assert [e.pts for e in events if isinstance(e, AudioReceived)] == [0, 160, 320, 480, 640]
    np.testing.assert_array_equal(
        np.concatenate([e.pcm for e in events if isinstance(e, AudioReceived)]), pcm)


def test_audio_frames_reject_non_int16():
    with pytest.raises(ValueError):
        streaming().audio_frames(np.zeros(10, dtype=np.float64))  # type: ignore[arg-type]


def test_higher_rate_audio_only_when_accepted():
    frame_16k = b"\x12\x01\x40" + PCM.astype("<i2").tobytes()  # 10 ms at 16 kHz
    conn = streaming()
    violation = only_violation(conn.receive_data(frame_16k), fatal=False)
    assert "16000 Hz" in violation.message
    assert conn.receive_data(frame_16k) == []  # reported once per kind
    assert conn.dropped_frames == 2
    (audio,) = conn.receive_data(AUDIO_FRAME)  # pts still counts the dropped 20 ms
    assert isinstance(audio, AudioReceived) and audio.pts == 160

    conn = AudioSocketConnection(accepted_rates=frozenset({8000, 16000}))
    conn.receive_data(UUID_FRAME)
    first, second = conn.receive_data(frame_16k + frame_16k)
    assert isinstance(first, AudioReceived) and isinstance(second, AudioReceived)
    assert (first.sample_rate, first.pts, second.pts) == (16000, 0, 160)


def test_error_frame_with_caller_hangup_ends_the_call():
    conn = streaming()
    (event,) = conn.receive_data(b"\xff\x00\x01\x01")
    assert isinstance(event, CallEnded) and "hangup of calling party" in event.reason
    assert conn.state is AudioSocketState.CLOSED


@pytest.mark.parametrize("frame, fragment", [
    (b"\xff\x00\x01\x02", "frame forwarding error"),
    (b"\xff\x00\x01\x06", "frame forwarding error, memory (allocation) error"),
    (b"\xff\x00\x00", "unspecified"),
])
def test_other_error_frames_are_reported(frame, fragment):
    conn = streaming()
    assert fragment in only_violation(conn.receive_data(frame), fatal=False).message
    assert conn.state is AudioSocketState.STREAMING


def test_hangup_before_uuid():
    conn = AudioSocketConnection()
    assert conn.receive_data(HANGUP_FRAME) == [CallEnded("hangup before call id")]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("first", [AUDIO_FRAME, DTMF_FRAME, b"\x02\x00\x00",
                                   b"GET / HTTP/1.1\r\n"])
def test_first_frame_must_be_the_uuid(first):
    conn = AudioSocketConnection()
    only_violation(conn.receive_data(first + UUID_FRAME), fatal=True)
    assert conn.state is AudioSocketState.ERRORED
    assert conn.buffered_bytes == 0
    assert conn.receive_data(UUID_FRAME) == []


@pytest.mark.parametrize("size", [0, 15, 17])
def test_uuid_of_the_wrong_size_is_fatal(size):
    conn = AudioSocketConnection()
    frame = bytes([1]) + size.to_bytes(2, "big") + b"\x00" * size
    assert "UUID frame of" in only_violation(conn.receive_data(frame), fatal=True).message


def test_oversize_length_is_fatal_before_the_payload_arrives():
    conn = streaming()
    header = b"\x10" + (MAX_PAYLOAD_BYTES + 1).to_bytes(2, "big")
    assert "limit" in only_violation(conn.receive_data(header), fatal=True).message
    assert conn.buffered_bytes == 0


def test_largest_allowed_frame_is_accepted_across_reads():
    conn = streaming()
    frame = b"\x10" + MAX_PAYLOAD_BYTES.to_bytes(2, "big") + b"\x00" * MAX_PAYLOAD_BYTES
    assert conn.receive_data(frame[:-1]) == []
    assert conn.buffered_bytes == len(frame) - 1 <= MAX_BUFFERED_BYTES
    (event,) = conn.receive_data(frame[-1:])
    assert isinstance(event, AudioReceived) and len(event.pcm) == MAX_PAYLOAD_BYTES // 2


@pytest.mark.parametrize("frame, fragment", [
    (b"\x10\x00\x03abc", "odd length"),
    (b"\x03\x00\x01x", "DTMF"),
    (b"\x03\x00\x02" + b"12", "DTMF"),
    (b"\x03\x00\x00", "DTMF"),
    (b"\x42\x00\x02hi", "unknown frame kind 0x42"),
    (UUID_FRAME, "second UUID"),
])
def test_bad_frames_after_the_uuid_are_skipped(frame, fragment):
    conn = streaming()
    assert fragment in only_violation(conn.receive_data(frame), fatal=False).message
    (audio,) = conn.receive_data(AUDIO_FRAME)  # framing intact, audio continues
    assert isinstance(audio, AudioReceived) and audio.pts == 0


def test_empty_audio_frame_is_harmless():
    conn = streaming()
    assert conn.receive_data(b"\x10\x00\x00") == []


def test_too_many_violations_become_fatal():
    conn = streaming()
    junk = b"\x42\x00\x00" * (MAX_NONFATAL_VIOLATIONS + 5) + AUDIO_FRAME
    events = conn.receive_data(junk)
    assert len(events) == MAX_NONFATAL_VIOLATIONS + 1
    assert all(isinstance(e, ProtocolViolation) for e in events)
    assert events[-1].fatal and not any(e.fatal for e in events[:-1])
    assert conn.state is AudioSocketState.ERRORED and conn.buffered_bytes == 0
