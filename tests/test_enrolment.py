"""Enrolment with consent, refusal of bad audio, and erasure that leaves no voiceprint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamguard.enrolment import (
    ConsentRecord,
    Enroller,
    EnrolmentPolicy,
    EnrolmentRefused,
    MemoryEnrolmentStore,
    RefusalReason,
    SQLiteEnrolmentStore,
)
from streamguard.media import decode_file
from streamguard.speaker import SpeakerEncoder, cosine

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ge2e" / "audio"
pytestmark = pytest.mark.skipif(not AUDIO.exists(), reason="shared GE2E audio missing")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def clip(speaker: str, name: str) -> np.ndarray:
    return decode_file(AUDIO / "librispeech_test-other" / speaker / f"{name}.flac").pcm


def consent(subject: str = "alice", **changes: Any) -> ConsentRecord:
    fields: dict[str, Any] = {
        "subject_id": subject, "consented_by": subject, "granted_at": NOW - timedelta(days=1),
        "purpose": "caller_verification", "expires_at": NOW + timedelta(days=365),
        "evidence_ref": "ivr-consent/2026-02-28/abc123"}
    fields.update(changes)
    return ConsentRecord(**fields)


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder.load()


@pytest.fixture()
def events() -> list[dict[str, Any]]:
    return []


@pytest.fixture()
def enroller(encoder: SpeakerEncoder, events: list[dict[str, Any]]) -> Enroller:
    return Enroller(encoder, MemoryEnrolmentStore(), audit=events.append, clock=lambda: NOW)


def refused(enroller: Enroller, audio: Any, record: ConsentRecord | None = None,
            subject: str = "alice", **kwargs: Any) -> RefusalReason:
    with pytest.raises(EnrolmentRefused) as info:
        enroller.enrol(subject, audio, record if record is not None else consent(subject),
                       **kwargs)
    return info.value.reason


@pytest.mark.parametrize(("record", "reason"), [
    (None, RefusalReason.NO_CONSENT),
    (consent(expires_at=NOW - timedelta(seconds=1)), RefusalReason.CONSENT_EXPIRED),
    (consent("bob"), RefusalReason.CONSENT_SUBJECT_MISMATCH),
    (consent(evidence_ref=" "), RefusalReason.CONSENT_INVALID),
    (consent(consented_by=""), RefusalReason.CONSENT_INVALID),
    (consent(granted_at=NOW + timedelta(days=2)), RefusalReason.CONSENT_INVALID),
    (consent(granted_at=datetime(2026, 2, 1)), RefusalReason.CONSENT_INVALID),
    (consent(expires_at=NOW - timedelta(days=3)), RefusalReason.CONSENT_INVALID),
])
def test_consent_is_required_and_checked(enroller: Enroller, events: list[dict[str, Any]],
                                         record: ConsentRecord | None,
                                         reason: RefusalReason) -> None:
    with pytest.raises(EnrolmentRefused) as info:
        enroller.enrol("alice", clip("1688", "1688-142285-0000"), record)
    assert info.value.reason == reason
    assert enroller.store.subjects() == []
    assert events[-1]["event"] == "enrolment_refused" and events[-1]["reason"] == reason.value


def test_purpose_must_be_allowed(encoder: SpeakerEncoder) -> None:
    policy = EnrolmentPolicy(allowed_purposes=frozenset({"fraud_prevention"}))
    enroller = Enroller(encoder, MemoryEnrolmentStore(), policy, clock=lambda: NOW)
    assert refused(enroller, clip("1688", "1688-142285-0000")) == RefusalReason.CONSENT_INVALID


def test_bad_audio_is_refused_with_reasons(enroller: Enroller) -> None:
    rng = np.random.default_rng(0)
    sr = 16000
    speech = clip("1688", "1688-142285-0000")
    assert refused(enroller, np.zeros(10 * sr, np.int16)) == RefusalReason.SILENT
    assert refused(enroller, speech[: int(2.0 * sr)]) == RefusalReason.TOO_SHORT
    # A melody of harmonic notes, and a plain tone: steady pitches are not speech.
    t = np.arange(int(0.25 * sr)) / sr
    notes = [sum(0.6 ** h * np.sin(2 * np.pi * (h + 1) * f * t) for h in range(5))
             * np.exp(-2 * t) for f in 220 * 2 ** (rng.integers(0, 12, 32) / 12)]
    melody = np.concatenate(notes)
    assert refused(enroller, (0.3 * melody / np.abs(melody).max()).astype(np.float32)
                   ) == RefusalReason.NOT_SPEECH
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8 * sr) / sr)
    assert refused(enroller, tone) == RefusalReason.NOT_SPEECH
    noise = np.clip(0.2 * rng.standard_normal(8 * sr), -1, 1).astype(np.float32)
    assert refused(enroller, noise) in (RefusalReason.NOT_SPEECH, RefusalReason.TOO_SHORT)
    two = np.concatenate([clip("1688", "1688-142285-0000")[: 6 * sr],
                          clip("2414", "2414-128291-0000")[: 6 * sr]])
    assert refused(enroller, two) == RefusalReason.SEVERAL_SPEAKERS
    assert enroller.store.subjects() == []


@pytest.mark.parametrize("audio", [
    np.zeros((2, 48000), np.int16),
    np.zeros(48000, np.int32),
    np.full(48000, 3000.0),
    np.full(48000, np.nan, np.float32),
    b"RIFF....",
    "/nonexistent/enrol.wav",
])
def test_wrong_format_is_refused(enroller: Enroller, audio: Any) -> None:
    assert refused(enroller, audio) == RefusalReason.BAD_FORMAT


def test_unsupported_rate_and_unreadable_file(enroller: Enroller, tmp_path: Path) -> None:
    assert refused(enroller, clip("1688", "1688-142285-0000"),
                   sample_rate=4000) == RefusalReason.BAD_FORMAT
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 100)
    assert refused(enroller, junk) == RefusalReason.BAD_FORMAT


def test_enrol_then_verify_and_audit_holds_no_voiceprint(
        enroller: Enroller, events: list[dict[str, Any]], encoder: SpeakerEncoder) -> None:
    voiceprint = enroller.enrol("alice", clip("1688", "1688-142285-0000"), consent())
    assert voiceprint.embedding.shape == (256,) and voiceprint.n_partials > 3
    assert voiceprint.consistency > 0.72 and voiceprint.speech_seconds > 3
    same = encoder.embed_utterance(clip("1688", "1688-142285-0001") / 32768.0)
    other = encoder.embed_utterance(clip("2414", "2414-128291-0000") / 32768.0)
    assert cosine(voiceprint.embedding, same.embedding) > 0.75 > cosine(
        voiceprint.embedding, other.embedding)
    event = events[-1]
    assert event["event"] == "enrolment" and event["audio"]["kept"] is False
    assert "embedding" not in repr(event) and event["consent"]["evidence_ref"]


def test_file_path_and_8khz_input_are_accepted(enroller: Enroller, tmp_path: Path) -> None:
    path = AUDIO / "librispeech_test-other" / "1998" / "1998-15444-0000.flac"
    from_file = enroller.enrol("alice", path, consent())
    narrow = decode_file(path, sample_rate=8000).pcm
    from_phone = enroller.enrol("alice", narrow, consent(), sample_rate=8000)
    assert cosine(from_file.embedding, from_phone.embedding) > 0.8
    assert len(enroller.voiceprints("alice")) == 2


def test_erasure_removes_every_voiceprint(enroller: Enroller,
                                          events: list[dict[str, Any]]) -> None:
    a = enroller.enrol("alice", clip("1688", "1688-142285-0000"), consent())
    b = enroller.enrol("alice", clip("1688", "1688-142285-0001"), consent())
    enroller.enrol("bob", clip("2414", "2414-128291-0002"), consent("bob"))
    record = enroller.delete_subject("alice", requested_by="dpo@bank.example")
    assert set(record.voiceprint_ids) == {a.voiceprint_id, b.voiceprint_id}
    assert record.voiceprints_removed == 2
    assert enroller.store.voiceprints("alice") == [] and enroller.store.subjects() == ["bob"]
    audit = record.as_dict()
    assert events[-1] == audit and audit["event"] == "voiceprint_erasure"
    assert not any(isinstance(v, np.ndarray) for v in audit.values())
    again = enroller.delete_subject("alice", requested_by="dpo@bank.example")
    assert again.voiceprints_removed == 0


def test_sqlite_store_persists_and_erases_for_real(encoder: SpeakerEncoder,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "voiceprints.db"
    with SQLiteEnrolmentStore(path) as store:
        enroller = Enroller(encoder, store, clock=lambda: NOW)
        made = enroller.enrol("alice", clip("1688", "1688-142285-0000"), consent())
        enroller.enrol("bob", clip("2414", "2414-128291-0002"), consent("bob"))
    with SQLiteEnrolmentStore(path) as store:
        [loaded] = store.voiceprints("alice")
        np.testing.assert_array_equal(loaded.embedding, made.embedding)
        assert loaded.consent == made.consent and loaded.created_at == made.created_at
        assert store.subjects() == ["alice", "bob"]
        blob = made.embedding.astype("<f4").tobytes()
        assert blob in path.read_bytes()
        record = Enroller(encoder, store, clock=lambda: NOW).delete_subject(
            "alice", requested_by="alice")
        assert record.voiceprints_removed == 1
    # secure_delete: the erased embedding's bytes are gone from the file itself.
    raw = path.read_bytes()
    assert blob[:64] not in raw
    with SQLiteEnrolmentStore(path) as store:
        assert store.subjects() == ["bob"]


def test_expired_consent_stops_use_and_is_purged(encoder: SpeakerEncoder) -> None:
    clock = [NOW]
    enroller = Enroller(encoder, MemoryEnrolmentStore(), clock=lambda: clock[0])
    enroller.enrol("alice", clip("1688", "1688-142285-0000"),
                   consent(expires_at=NOW + timedelta(days=30)))
    assert len(enroller.voiceprints("alice")) == 1
    clock[0] = NOW + timedelta(days=31)
    assert enroller.voiceprints("alice") == []
    [record] = enroller.purge_expired()
    assert record.subject_id == "alice" and record.reason == "consent expired"
    assert enroller.store.subjects() == []
