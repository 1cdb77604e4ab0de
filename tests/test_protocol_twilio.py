"""Twilio Media Streams: the message shapes of Twilio's "WebSocket messages"
page, fed in verbatim, and every way a peer can get them wrong."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from gateway.protocols.events import (
    AudioReceived,
    CallEnded,
    CallStarted,
    DtmfReceived,
    LocalProtocolError,
    MarkAcknowledged,
    ProtocolViolation,
)
from gateway.protocols.twilio import (
    MAX_MESSAGE_CHARS,
    MAX_NONFATAL_VIOLATIONS,
    TwilioConnection,
    TwilioState,
)
from streamguard.media import ulaw_decode, ulaw_encode

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA362ca3d4b5c1f9b27e4e3f6e3f3a7b2c"
ACCOUNT = "AC25e16e9a716a4a1786a7c83f58e30482"

CONNECTED = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
START = """{
  "event": "start",
  "sequenceNumber": "1",
  "start": {
    "accountSid": "AC25e16e9a716a4a1786a7c83f58e30482",
    "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
    "callSid": "CA362ca3d4b5c1f9b27e4e3f6e3f3a7b2c",
    "tracks": [ "inbound", "outbound" ],
    "customParameters": { "tenant": "acme", "FirstName": "Jane" },
    "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 }
  },
  "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"
}"""
MARK = """{
  "event": "mark",
  "sequenceNumber": "4",
  "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
  "mark": { "name": "my label" }
}"""
DTMF = """{
  "event": "dtmf",
  "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
  "sequenceNumber": "5",
  "dtmf": { "track": "inbound_track", "digit": "1" }
}"""
STOP = """{
  "event": "stop",
  "sequenceNumber": "6",
  "stop": {
    "accountSid": "AC25e16e9a716a4a1786a7c83f58e30482",
    "callSid": "CA362ca3d4b5c1f9b27e4e3f6e3f3a7b2c"
  },
  "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"
}"""

RAMP = (np.arange(160, dtype=np.int16) - 80) * 200  # 20 ms, every μ-law segment-ish


def media(seq: int, track: str, chunk: int, timestamp: int, ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode()
    return ('{"event": "media", "sequenceNumber": "' + str(seq) + '", "media": '
            '{"track": "' + track + '", "chunk": "' + str(chunk) + '", "timestamp": "'
            + str(timestamp) + '", "payload": "' + payload + '"}, "streamSid": "' + SID + '"}')


def started() -> TwilioConnection:
    conn = TwilioConnection()
    assert conn.receive_text(CONNECTED) == []
    conn.receive_text(START)
    return conn


def only_violation(events: list[object], *, fatal: bool) -> ProtocolViolation:
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ProtocolViolation)
    assert event.fatal is fatal
    return event


# --------------------------------------------------------------- happy path


def test_start_announces_the_call_with_both_legs_and_custom_parameters():
    conn = TwilioConnection()
    assert conn.receive_text(CONNECTED) == []
    assert conn.receive_text(START) == [CallStarted(
        call_id=CALL, legs=("caller", "agent"), sample_rate=8000, encoding="PCMU",
        parameters={"tenant": "acme", "FirstName": "Jane"})]
    assert conn.state is TwilioState.STREAMING
    assert (conn.stream_sid, conn.call_sid, conn.account_sid) == (SID, CALL, ACCOUNT)


def test_full_stream_media_dtmf_mark_stop():
    conn = started()
    ulaw = ulaw_encode(RAMP)
    events = conn.receive_text(media(2, "inbound", 1, 0, ulaw))
    events += conn.receive_text(media(3, "outbound", 1, 20, ulaw))
    events += conn.receive_text(MARK)
    events += conn.receive_text(DTMF)
    events += conn.receive_text(STOP)

    caller, agent, mark, dtmf, end = events
    assert isinstance(caller, AudioReceived) and isinstance(agent, AudioReceived)
    assert (caller.leg, caller.pts, caller.sample_rate) == ("caller", 0, 8000)
    assert (agent.leg, agent.pts) == ("agent", 160)  # 20 ms at 8 kHz
    assert caller.pcm.dtype == np.int16
    np.testing.assert_array_equal(caller.pcm, ulaw_decode(ulaw))
    assert mark == MarkAcknowledged("my label")
    assert dtmf == DtmfReceived("1")
    assert end == CallEnded("stop")
    assert conn.state is TwilioState.STOPPED
    assert conn.receive_text(media(7, "inbound", 2, 40, ulaw)) == []  # after stop: ignored


def test_start_without_connected_is_accepted():
    conn = TwilioConnection()
    assert isinstance(conn.receive_text(START)[0], CallStarted)


def test_start_defaults_to_the_inbound_track():
    conn = TwilioConnection()
    message = json.loads(START)
    del message["start"]["tracks"]
    (event,) = conn.receive_text(json.dumps(message))
    assert isinstance(event, CallStarted) and event.legs == ("caller",)


def test_non_string_custom_parameters_become_json_text():
    message = json.loads(START)
    message["start"]["customParameters"] = {"n": 3, "flag": True, "s": "x"}
    (event,) = TwilioConnection().receive_text(json.dumps(message))
    assert isinstance(event, CallStarted)
    assert event.parameters == {"n": "3", "flag": "true", "s": "x"}


def test_outgoing_messages_byte_for_byte():
    conn = started()
    silence = np.zeros(160, dtype=np.int16)  # μ-law silence is 0xFF
    payload = base64.b64encode(b"\xff" * 160).decode()
    assert conn.media_messages(silence) == [
        '{"event":"media","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0",'
        '"media":{"payload":"' + payload + '"}}']
    assert conn.mark_message("my label") == (
        '{"event":"mark","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0",'
        '"mark":{"name":"my label"}}')
    assert conn.clear_message() == (
        '{"event":"clear","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}')


def test_media_messages_are_20ms_chunks_that_round_trip():
    conn = started()
    pcm = np.tile(RAMP, 3)[:400]
    messages = conn.media_messages(pcm)
    sizes = [len(base64.b64decode(json.loads(m)["media"]["payload"])) for m in messages]
    assert sizes == [160, 160, 80]
    echo = TwilioConnection()
    echo.receive_text(START)
    decoded = []
    for i, text in enumerate(messages):
        inbound = json.loads(text)
        inbound["media"]["track"] = "inbound"
        inbound["sequenceNumber"] = str(i + 2)
        (event,) = echo.receive_text(json.dumps(inbound))
        assert isinstance(event, AudioReceived)
        decoded.append(event.pcm)
    np.testing.assert_array_equal(np.concatenate(decoded), ulaw_decode(ulaw_encode(pcm)))
    assert conn.media_messages(np.zeros(0, dtype=np.int16)) == []


def test_sending_before_start_is_a_local_error():
    conn = TwilioConnection()
    with pytest.raises(LocalProtocolError):
        conn.media_messages(RAMP)
    with pytest.raises(LocalProtocolError):
        conn.mark_message("x")
    with pytest.raises(LocalProtocolError):
        conn.clear_message()


def test_media_messages_reject_non_int16_audio():
    with pytest.raises(ValueError):
        started().media_messages(np.zeros(160, dtype=np.float32))  # type: ignore[arg-type]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
    ("[1, 2, 3]", "not a JSON object"),
    ('"media"', "not a JSON object"),
    ('{"sequenceNumber": "2"}', "no 'event'"),
    ('{"event": 7}', "no 'event'"),
    ('{"event": "transcription", "sequenceNumber": "2"}', "unknown event type"),
    ("[" * 10_000 + "]" * 10_000, "not valid JSON"),  # deep nesting: RecursionError
    ('{"event": "mark", "sequenceNumber": "2", "mark": {}}', "'mark' without a name"),
    ('{"event": "dtmf", "sequenceNumber": "2", "dtmf": {"digit": "x"}}', "valid digit"),
])
def test_malformed_messages_are_non_fatal(text, fragment):
    conn = started()
    violation = only_violation(conn.receive_text(text), fatal=False)
    assert fragment in violation.message
    assert conn.state is TwilioState.STREAMING


def test_base64_garbage_drops_the_chunk_but_not_the_call():
    conn = started()
    bad = media(2, "inbound", 1, 0, b"").replace('"payload": ""',
                                                '"payload": "@@not base64!!"')
    assert "base64" in only_violation(conn.receive_text(bad), fatal=False).message
    assert isinstance(conn.receive_text(media(3, "inbound", 2, 20, b"\x00" * 160))[0],
                      AudioReceived)


def test_media_for_an_unknown_track_is_skipped():
    conn = started()
    text = media(2, "sideways", 1, 0, b"\xff" * 160)
    assert "unknown track" in only_violation(conn.receive_text(text), fatal=False).message


def test_media_before_start_is_fatal_and_silences_the_connection():
    conn = TwilioConnection()
    conn.receive_text(CONNECTED)
    only_violation(conn.receive_text(media(1, "inbound", 1, 0, b"\xff" * 160)), fatal=True)
    assert conn.state is TwilioState.ERRORED
    assert conn.receive_text(START) == []


def test_second_start_is_fatal():
    conn = started()
    repeat = START.replace('"sequenceNumber": "1"', '"sequenceNumber": "2"')
    assert "second 'start'" in only_violation(conn.receive_text(repeat), fatal=True).message


@pytest.mark.parametrize("fmt", [
    {"encoding": "audio/x-alaw", "sampleRate": 8000, "channels": 1},
    {"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1},
    {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2},
    "mulaw",
])
def test_unsupported_media_format_is_fatal(fmt):
    message = json.loads(START)
    message["start"]["mediaFormat"] = fmt
    only_violation(TwilioConnection().receive_text(json.dumps(message)), fatal=True)


def test_start_without_stream_sid_is_fatal():
    message = json.loads(START)
    del message["start"]["streamSid"]
    del message["streamSid"]
    only_violation(TwilioConnection().receive_text(json.dumps(message)), fatal=True)


def test_oversize_message_is_fatal():
    conn = started()
    text = '{"event": "media", "pad": "%s"}' % ("x" * MAX_MESSAGE_CHARS)
    assert "exceeds" in only_violation(conn.receive_text(text), fatal=True).message
    assert conn.receive_text(media(2, "inbound", 1, 0, b"\xff")) == []


def test_sequence_gap_is_reported_but_audio_kept():
    conn = started()
    events = conn.receive_text(media(5, "inbound", 1, 0, b"\xff" * 160))
    violation, audio = events
    assert isinstance(violation, ProtocolViolation) and not violation.fatal
    assert "sequenceNumber 5 after 1" in violation.message
    assert isinstance(audio, AudioReceived)
    assert conn.receive_text(media(6, "inbound", 2, 20, b"\xff" * 160))[0].pts == 160


def test_foreign_stream_sid_is_reported():
    conn = started()
    text = media(2, "inbound", 1, 0, b"\xff").replace(SID, "MZother")
    events = conn.receive_text(text)
    assert isinstance(events[0], ProtocolViolation) and "streamSid" in events[0].message
    assert isinstance(events[1], AudioReceived)


def test_bad_timestamp_gives_no_pts():
    conn = started()
    text = media(2, "inbound", 1, 0, b"\xff" * 8).replace('"timestamp": "0"',
                                                         '"timestamp": "-3"')
    (event,) = conn.receive_text(text)
    assert isinstance(event, AudioReceived) and event.pts is None


def test_too_many_violations_become_fatal():
    conn = started()
    for _ in range(MAX_NONFATAL_VIOLATIONS):
        only_violation(conn.receive_text("nope"), fatal=False)
    assert "more than" in only_violation(conn.receive_text("nope"), fatal=True).message
    assert conn.receive_text(STOP) == []
