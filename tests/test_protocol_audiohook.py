"""Genesys AudioHook v2, server side: the transactions of the protocol with
their sequence numbers, two-channel audio, and what ends a session."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from gateway.protocols.audiohook import (
    MAX_AUDIO_FRAME_BYTES,
    MAX_TEXT_CHARS,
    AudioHookConnection,
    AudioHookState,
)
from gateway.protocols.events import (
    AudioReceived,
    CallEnded,
    CallStarted,
    CallUpdated,
    Paused,
    ProtocolViolation,
    Resumed,
)
from streamguard.media import ulaw_decode

SESSION = "e160e428-53e2-487c-977d-96989bf5c99d"
CONVERSATION = "090eaa2f-72fa-480a-83e0-8667ff89c0ec"
ORG = "d7934305-0972-4844-938e-9060eef73d05"
PARTICIPANT = "883efee8-3d6c-4537-b500-6d7ca4b92fa0"

STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
EXTERNAL = {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
INTERNAL = {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000}
L16 = {"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 8000}

OPEN = """{
  "version": "2",
  "type": "open",
  "seq": 1,
  "serverseq": 0,
  "id": "e160e428-53e2-487c-977d-96989bf5c99d",
  "position": "PT0S",
  "parameters": {
    "organizationId": "d7934305-0972-4844-938e-9060eef73d05",
    "conversationId": "090eaa2f-72fa-480a-83e0-8667ff89c0ec",
    "participant": {
      "id": "883efee8-3d6c-4537-b500-6d7ca4b92fa0",
      "ani": "+1-555-555-1234",
      "aniName": "John Doe",
      "dnis": "+1-800-555-6789"
    },
    "media": [
      {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
      {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
      {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000}
    ],
    "language": "en-US",
    "customConfig": {"tenant": "acme", "level": 3}
  }
}"""


class Client:
    """Builds client messages with correct seq/serverseq, like Genesys does."""

    def __init__(self, conn: AudioHookConnection) -> None:
        self.conn = conn
        self.seq = 0
        self.serverseq = 0
        self.position = "PT0S"

    def send(self, kind: str, parameters: dict[str, Any] | None = None) -> list[object]:
        self.seq += 1
        text = json.dumps({"version": "2", "type": kind, "seq": self.seq,
                           "serverseq": self.serverseq, "id": SESSION,
                           "position": self.position, "parameters": parameters or {}})
        return list(self.conn.receive_text(text))

    def replies(self) -> list[dict[str, Any]]:
        out = [json.loads(m) for m in self.conn.data_to_send()]
        if out:
            self.serverseq = out[-1]["seq"]
        return out


def opened(auto_closed: bool = True) -> tuple[AudioHookConnection, Client]:
    conn = AudioHookConnection(auto_closed=auto_closed)
    client = Client(conn)
    client.seq = 1
    conn.receive_text(OPEN)
    client.replies()
    return conn, client


def only_violation(events: list[object], *, fatal: bool) -> ProtocolViolation:
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, ProtocolViolation)
    assert event.fatal is fatal
    return event


def assert_error_disconnect(conn: AudioHookConnection, fragment: str = "") -> None:
    (reply,) = [json.loads(m) for m in conn.data_to_send()]
    assert reply["type"] == "disconnect"
    assert reply["parameters"]["reason"] == "error"
    assert fragment in reply["parameters"]["info"]
    assert conn.state is AudioHookState.ERRORED


# --------------------------------------------------------------- happy path


def test_open_negotiates_stereo_pcmu_and_replies_opened_byte_for_byte():
    conn = AudioHookConnection()
    (event,) = conn.receive_text(OPEN)
    assert event == CallStarted(
        call_id=CONVERSATION, legs=("caller", "agent"), sample_rate=8000, encoding="PCMU",
        parameters={"tenant": "acme", "level": "3", "participantId": PARTICIPANT,
                    "ani": "+1-555-555-1234", "aniName": "John Doe",
                    "dnis": "+1-800-555-6789", "organizationId": ORG,
                    "conversationId": CONVERSATION, "language": "en-US"})
    assert conn.data_to_send() == [
        '{"version":"2","type":"opened","seq":1,"clientseq":1,'
        '"id":"e160e428-53e2-487c-977d-96989bf5c99d",'
        '"parameters":{"media":[{"type":"audio","format":"PCMU",'
        '"channels":["external","internal"],"rate":8000}],"startPaused":false}}']
    assert conn.data_to_send() == []  # drained
    assert conn.state is AudioHookState.ACTIVE


@pytest.mark.parametrize("offered, channels, legs", [
    ([L16, EXTERNAL, STEREO], ["external", "internal"], ("caller", "agent")),
    ([INTERNAL, EXTERNAL], ["internal"], ("agent",)),
    ([L16, EXTERNAL], ["external"], ("caller",)),
    ([{**STEREO, "channels": ["internal", "external"]}], ["internal", "external"],
     ("agent", "caller")),
])
def test_media_choice_prefers_stereo_pcmu(offered, channels, legs):
    message = json.loads(OPEN)
    message["parameters"]["media"] = offered
    conn = AudioHookConnection()
    (event,) = conn.receive_text(json.dumps(message))
    assert isinstance(event, CallStarted) and event.legs == legs
    (reply,) = [json.loads(m) for m in conn.data_to_send()]
    assert reply["parameters"]["media"] == [{**STEREO, "channels": channels}]


def test_supported_languages_request_gets_an_empty_list():
    message = json.loads(OPEN)
    message["parameters"]["supportedLanguages"] = True
    conn = AudioHookConnection()
    conn.receive_text(json.dumps(message))
    (reply,) = [json.loads(m) for m in conn.data_to_send()]
    assert reply["parameters"]["supportedLanguages"] == []


def test_ping_pong_pause_resume_update_close_with_sequence_numbers():
    conn, client = opened()
    assert client.send("ping", {"rtt": "PT0.045S"}) == []
    assert client.replies() == [{"version": "2", "type": "pong", "seq": 2, "clientseq": 2,
                                 "id": SESSION, "parameters": {}}]

    assert client.send("paused") == [Paused()]
    assert client.send("paused") == []  # still paused: no second event
    assert conn.state is AudioHookState.PAUSED
    assert client.send("resumed", {"start": "PT1.2S", "discarded": "PT3S"}) == [Resumed()]
    assert client.send("resumed", {"start": "PT1.2S", "discarded": "PT0S"}) == []
    assert client.send("update", {"language": "es-ES"}) == [CallUpdated({"language": "es-ES"})]
    assert client.replies() == []  # none of these owes a reply

    assert client.send("close", {"reason": "end"}) == [CallEnded("end")]
    assert client.replies() == [{"version": "2", "type": "closed", "seq": 3, "clientseq": 8,
                                 "id": SESSION, "parameters": {}}]
    assert conn.state is AudioHookState.CLOSED
    assert client.send("ping") == []  # session over


def test_server_pause_and_resume_requests():
    conn, client = opened()
    assert conn.pause() is True
    assert conn.resume() is True
    pause, resume = client.replies()
    assert (pause["type"], pause["seq"], pause["clientseq"]) == ("pause", 2, 1)
    assert (resume["type"], resume["seq"]) == ("resume", 3)
    assert AudioHookConnection().pause() is False  # not open yet


def test_two_channel_audio_is_deinterleaved_with_running_pts():
    conn, _ = opened()
    external = bytes(range(0, 200, 2))
    internal = bytes(range(1, 200, 2))
    frame = bytes(b for pair in zip(external, internal, strict=True) for b in pair)
    caller, agent = conn.receive_bytes(frame)
    assert isinstance(caller, AudioReceived) and isinstance(agent, AudioReceived)
    assert (caller.leg, agent.leg) == ("caller", "agent")
    np.testing.assert_array_equal(caller.pcm, ulaw_decode(external))
    np.testing.assert_array_equal(agent.pcm, ulaw_decode(internal))
    assert caller.pts == agent.pts == 0
    later, _ = conn.receive_bytes(frame)
    assert isinstance(later, AudioReceived) and later.pts == 100
    assert conn.position == 200


def test_mono_audio():
    message = json.loads(OPEN)
    message["parameters"]["media"] = [EXTERNAL]
    conn = AudioHookConnection()
    conn.receive_text(json.dumps(message))
    (event,) = conn.receive_bytes(b"\xff" * 1600)
    assert isinstance(event, AudioReceived) and event.leg == "caller" and len(event.pcm) == 1600


def test_discarded_audio_moves_pts_past_the_gap():
    conn, client = opened()
    conn.receive_bytes(b"\xff" * 800)  # 400 samples per channel = 50 ms
    assert client.send("discarded", {"start": "PT0.05S", "discarded": "PT2.5S"}) == []
    caller, _ = conn.receive_bytes(b"\xff" * 2)
    assert isinstance(caller, AudioReceived) and caller.pts == 400 + 20_000


def test_send_event_and_disconnect():
    conn, client = opened()
    entity = {"type": "streamguard", "data": {"state": "synthetic", "p": 0.97}}
    assert conn.send_event([entity]) is True
    assert conn.disconnect("completed", "call judged") is True
    event, disconnect = client.replies()
    assert event == {"version": "2", "type": "event", "seq": 2, "clientseq": 1, "id": SESSION,
                     "parameters": {"entities": [entity]}}
    assert disconnect["type"] == "disconnect" and disconnect["seq"] == 3
    assert disconnect["parameters"] == {"reason": "completed", "info": "call judged"}
    # the client answers a disconnect with a close transaction
    assert client.send("close", {"reason": "disconnect"}) == [CallEnded("disconnect")]
    assert [r["type"] for r in client.replies()] == ["closed"]
    assert conn.send_event([entity]) is False  # nothing may follow closed
    assert conn.disconnect() is False


def test_send_event_before_open_is_refused_and_bad_entities_raise():
    assert AudioHookConnection().send_event([{"type": "x", "data": 1}]) is False
    conn, _ = opened()
    with pytest.raises(ValueError):
        conn.send_event([{"data": 1}])
    with pytest.raises(ValueError):
        conn.disconnect("because")


def test_manual_closed_leaves_room_for_final_events():
    conn, client = opened(auto_closed=False)
    assert client.send("close", {"reason": "end"}) == [CallEnded("end")]
    assert client.replies() == []
    assert conn.state is AudioHookState.CLOSING
    assert conn.send_event([{"type": "streamguard", "data": "final"}]) is True
    assert conn.send_closed() is True
    assert [r["type"] for r in client.replies()] == ["event", "closed"]
    assert conn.send_closed() is False


def test_connection_probe_gets_opened_but_starts_no_call():
    message = json.loads(OPEN)
    message["parameters"]["conversationId"] = "00000000-0000-0000-0000-000000000000"
    conn = AudioHookConnection()
    assert conn.receive_text(json.dumps(message)) == []
    assert conn.is_probe
    assert [json.loads(m)["type"] for m in conn.data_to_send()] == ["opened"]


def test_session_id_from_the_transport_must_match():
    conn = AudioHookConnection(session_id="11111111-2222-3333-4444-555555555555")
    only_violation(conn.receive_text(OPEN), fatal=True)
    assert_error_disconnect(conn, "session id")


# ---------------------------------------------------------------- bad input


def open_with(**changes: Any) -> str:
    message = json.loads(OPEN)
    message.update(changes)
    return json.dumps(message)


@pytest.mark.parametrize("text, fragment", [
    ("{oops", "not valid JSON"),
    ("[" * 10_000 + "]" * 10_000, "not valid JSON"),
    ("[]", "not a JSON object"),
    (open_with(version="1"), "version"),
    (open_with(id="not-a-uuid"), "id is not a UUID"),
    (open_with(seq="1"), "seq"),
    (open_with(seq=True), "seq"),
    (open_with(serverseq=-1), "serverseq"),
    (open_with(position="1.5"), "position"),
    (open_with(position="PT" + "9" * 30 + "S"), "position"),
    (open_with(parameters=[]), "parameters"),
    (open_with(seq=2), "seq 2 does not follow 0"),
    (open_with(serverseq=1), "serverseq 1 is ahead"),
    (open_with(type="opened"), "not a supported client message"),
    (open_with(type="frobnicate"), "not a supported client message"),
])
def test_bad_first_messages_end_the_session_with_an_error_disconnect(text, fragment):
    conn = AudioHookConnection()
    assert fragment in only_violation(conn.receive_text(text), fatal=True).message
    assert_error_disconnect(conn)
    assert conn.receive_text(OPEN) == []  # dead now
    assert conn.data_to_send() == []


@pytest.mark.parametrize("parameters, fragment", [
    ({"media": [STEREO]}, "conversationId"),
    ({"conversationId": "nope", "media": [STEREO]}, "conversationId"),
    ({"conversationId": CONVERSATION, "media": "PCMU"}, "media list"),
    ({"conversationId": CONVERSATION, "media": [L16]}, "none of the offered media"),
    ({"conversationId": CONVERSATION, "media": []}, "none of the offered media"),
    ({"conversationId": CONVERSATION,
      "media": [{**STEREO, "channels": ["external", "external"]}]}, "none of the offered"),
    ({"conversationId": CONVERSATION, "media": [{**STEREO, "rate": 16000}]}, "none of the"),
])
def test_bad_open_parameters_are_fatal(parameters, fragment):
    conn = AudioHookConnection()
    assert fragment in only_violation(conn.receive_text(open_with(parameters=parameters)),
                                      fatal=True).message
    assert_error_disconnect(conn)


def test_repeated_seq_is_fatal():
    conn, client = opened()
    client.seq = 0  # replay seq 1
    only_violation(client.send("ping"), fatal=True)
    assert_error_disconnect(conn, "seq 1 does not follow 1")


def test_serverseq_ahead_of_what_we_sent_is_fatal():
    conn, client = opened()
    client.serverseq = 5
    only_violation(client.send("ping"), fatal=True)
    assert_error_disconnect(conn, "serverseq")


def test_audio_before_opened_is_fatal():
    conn = AudioHookConnection()
    assert "before 'opened'" in only_violation(conn.receive_bytes(b"\xff" * 160),
                                               fatal=True).message
    assert_error_disconnect(conn)


def test_odd_sized_stereo_frame_is_fatal():
    conn, _ = opened()
    only_violation(conn.receive_bytes(b"\xff" * 161), fatal=True)
    assert_error_disconnect(conn, "whole number")


def test_oversize_frames_are_fatal():
    conn, _ = opened()
    only_violation(conn.receive_bytes(b"\xff" * (MAX_AUDIO_FRAME_BYTES + 2)), fatal=True)
    assert_error_disconnect(conn, "exceeds")
    conn, _ = opened()
    only_violation(conn.receive_text(" " * (MAX_TEXT_CHARS + 1)), fatal=True)
    assert_error_disconnect(conn, "exceeds")


def test_audio_while_paused_is_dropped_not_fatal():
    conn, client = opened()
    client.send("paused")
    only_violation(conn.receive_bytes(b"\xff" * 160), fatal=False)
    assert conn.position == 0
    assert conn.state is AudioHookState.PAUSED


def test_second_open_and_client_errors_are_non_fatal():
    conn, client = opened()
    message = json.loads(OPEN)
    assert "'open' in state active" in only_violation(
        client.send("open", message["parameters"]), fatal=False).message
    violation = only_violation(client.send("error", {"code": 429, "message": "slow down"}),
                               fatal=False)
    assert "429" in violation.message and "slow down" in violation.message
    assert client.replies() == []
    assert conn.state is AudioHookState.ACTIVE


def test_discarded_without_durations_is_fatal():
    conn, client = opened()
    only_violation(client.send("discarded", {"start": "soon"}), fatal=True)
    assert_error_disconnect(conn)
