"""Live impersonation check: voiceprint similarity combined with the synthetic-speech evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from streamguard import Action, ActionKind, Guard, GuardConfig
from streamguard.enrolment import ConsentRecord, Enroller, MemoryEnrolmentStore
from streamguard.events import IdentityCheck
from streamguard.media import StreamResampler, decode_file
from streamguard.speaker import SpeakerEncoder

from .test_session import collect, play

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ge2e" / "audio"
pytestmark = pytest.mark.skipif(not AUDIO.exists(), reason="shared GE2E audio missing")


def speech(speaker: str, *names: str, rms: float) -> np.ndarray:
    """Utterances of one LibriSpeech speaker at a chosen level: the level fixture model
    calls rms 0.03 genuine and rms 0.3 synthetic, so the voice-clone evidence is steered."""
    folder = AUDIO / "librispeech_test-other" / speaker
    pcm = np.concatenate([decode_file(folder / f"{speaker}-{n}.flac").pcm for n in names])
    x = pcm.astype(np.float64)
    return np.clip(x * (rms * 32768 / np.sqrt(np.mean(x**2))), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def encoder():
    return SpeakerEncoder.load()


@pytest.fixture(scope="module")
def store(encoder):
    store = MemoryEnrolmentStore()
    now = datetime.now(UTC)
    consent = ConsentRecord("cust-1688", "cust-1688", now - timedelta(days=1),
                            "caller_verification", now + timedelta(days=30), "ivr/consent/1")
    folder = AUDIO / "librispeech_test-other" / "1688"
    enrol_audio = np.concatenate([decode_file(folder / f"1688-142285-000{i}.flac").pcm
                                  for i in (0, 1)])
    Enroller(encoder, store).enrol("cust-1688", enrol_audio, consent)
    return store


def first_files(speaker: str) -> list[str]:
    files = sorted((AUDIO / "librispeech_test-other" / speaker).glob("*.flac"))
    return [f.stem.split("-", 1)[1] for f in files]


async def identity_call(level_model, store, encoder, audio, claimed="cust-1688"):
    guard = Guard.from_config(GuardConfig(model_path=level_model), enrolments=store,
                              speaker_encoder=encoder)
    async with guard:
        session = guard.open_session("call", meta={"claimed_id": claimed})
        await play(session, audio)
        await session.close()
        events = await collect(session)
    checks = [e for e in events if isinstance(e, IdentityCheck)]
    actions = [e for e in events if isinstance(e, Action)]
    return checks, actions


async def test_the_claimed_customer_in_person_matches(level_model, store, encoder):
    audio = speech("1688", "142285-0002", "142285-0003", rms=0.03)
    checks, actions = await identity_call(level_model, store, encoder, audio)
    final = checks[-1]
    assert final.final and final.status == "voice_match"
    assert final.similarity["low"] <= final.similarity["value"] <= final.similarity["high"]
    assert final.similarity["value"] >= 0.7
    assert not [a for a in actions if a.kind is ActionKind.STEP_UP]


async def test_another_voice_claiming_the_customer_is_a_mismatch(level_model, store, encoder):
    audio = speech("2609", *first_files("2609")[:2], rms=0.03)
    checks, actions = await identity_call(level_model, store, encoder, audio)
    assert checks[-1].status == "voice_mismatch"
    assert "voice_mismatch" in [c.status for c in checks if not c.final]
    step_up = [a for a in actions if a.kind is ActionKind.STEP_UP]
    assert step_up and step_up[0].rule == "step-up-on-voice-mismatch"


async def test_a_matching_but_synthetic_voice_is_a_clone(level_model, store, encoder):
    audio = speech("1688", "142285-0002", "142285-0003", rms=0.3)
    checks, actions = await identity_call(level_model, store, encoder, audio)
    assert checks[-1].status == "cloned_voice" and checks[-1].p_synthetic >= 0.7
    kinds = [a.kind for a in actions if a.rule == "warn-on-cloned-voice"]
    assert ActionKind.WARN in kinds and ActionKind.STEP_UP in kinds


async def test_unenrolled_claim_is_reported_without_scoring(level_model, store, encoder):
    audio = speech("1688", "142285-0002", rms=0.03)
    checks, _ = await identity_call(level_model, store, encoder, audio, claimed="nobody")
    assert [(c.status, c.final) for c in checks] == [("not_enrolled", False),
                                                     ("not_enrolled", True)]
    assert all(c.similarity is None for c in checks)


def test_cli_enrols_with_consent_lists_and_forgets(tmp_path, monkeypatch, capsys):
    import json

    from gateway.cli import main

    monkeypatch.setenv("STREAMGUARD_DATA_DIR", str(tmp_path))
    folder = AUDIO / "librispeech_test-other" / "1688"
    files = [str(folder / f"1688-142285-000{i}.flac") for i in (0, 1)]
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    code = main(["enrol", "cust-1688", *files, "--consented-by", "cust-1688",
                 "--purpose", "caller_verification", "--expires", expires,
                 "--evidence", "ivr/consent/1"])
    enrolled = json.loads(capsys.readouterr().out)
    assert code == 0 and enrolled["subject_id"] == "cust-1688" and "embedding" not in enrolled
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    code = main(["enrol", "cust-2", files[0], "--consented-by", "cust-2", "--purpose", "x",
                 "--expires", past, "--evidence", "e"])
    assert code == 1 and json.loads(capsys.readouterr().out)["refused"].startswith("consent")
    assert main(["voiceprints"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [v["subject_id"] for v in listed] == ["cust-1688"]
    assert main(["forget", "cust-1688", "--requested-by", "dpo"]) == 0
    assert json.loads(capsys.readouterr().out)["voiceprints_removed"] == 1
    assert main(["voiceprints"]) == 0 and capsys.readouterr().out == ""
    assert main(["audit", "verify", "--db", str(tmp_path / "audit.sqlite3")]) == 0


async def test_gateway_checks_a_claimed_identity_over_twilio(level_model, store, tmp_path):
    from gateway.replay import replay_twilio
    from gateway.server import Gateway
    from gateway.settings import GatewaySettings
    from streamguard.enrolment import SQLiteEnrolmentStore

    db = tmp_path / "enrolments.sqlite3"
    with SQLiteEnrolmentStore(db) as disk:
        for vp in store.voiceprints("cust-1688"):
            disk.add(vp)
    records = []

    class Sink:
        def emit(self, record):
            records.append(record)

    gw = Gateway(GatewaySettings(port=0, audiosocket_port=0, enrolments_db=db,
                                 guard=GuardConfig(model_path=level_model)), sinks=[Sink()])
    await gw.start()
    try:
        impostor = speech("2609", *first_files("2609")[:2], rms=0.03)
        down = StreamResampler(16000, 8000)
        pcm8k = np.concatenate([down.push(impostor), down.flush()])
        result = await replay_twilio(f"ws://127.0.0.1:{gw.port}/media/twilio", pcm8k, speed=8,
                                     parameters={"claimed_id": "cust-1688"}, linger=0.5)
    finally:
        await gw.stop()
    checks = [r for r in records if r["type"] == "identity"]
    assert checks and checks[-1]["status"] == "voice_mismatch"
    assert any(r["type"] == "action" and r["kind"] == "step_up" for r in records)
    assert "streamguard:step_up" in [m["mark"]["name"] for m in result.of_event("mark")]
