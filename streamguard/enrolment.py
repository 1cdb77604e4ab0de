"""Voiceprint enrolment with recorded consent, and erasure on request.

Why so strict: a voiceprint is biometric data. It may only be created with
the person's consent for a stated purpose and until a stated expiry, it must
be removable completely on request (right to erasure), and the proof that
enrolment and erasure happened must not itself contain the voiceprint. Raw
audio is never stored: only the 256-d embedding and quality figures.

Bad enrolment audio is refused with a reason a person can act on (too
short, silent, music, several speakers, wrong format), because a voiceprint
built from it would silently weaken every later impersonation check.

The core opens no sockets; the SQLite store writes to a file the caller names.
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamguard.errors import MediaError, StreamGuardError
from streamguard.media.decode import decode_file
from streamguard.media.pcm import float_to_pcm16, pcm16_to_float
from streamguard.media.resample import StreamResampler
from streamguard.speaker.encoder import EMBEDDING_DIM, MODEL_NAME, SpeakerEncoder
from streamguard.vad import FRAME_SAMPLES, SpeechGate

__all__ = [
    "ConsentRecord",
    "Enroller",
    "EnrolmentPolicy",
    "EnrolmentRefused",
    "EnrolmentStore",
    "ErasureRecord",
    "MemoryEnrolmentStore",
    "RefusalReason",
    "SQLiteEnrolmentStore",
    "Voiceprint",
]

SAMPLE_RATE = 16000
Float32 = npt.NDArray[np.float32]
AudioInput = npt.NDArray[Any] | str | Path


class RefusalReason(StrEnum):
    NO_CONSENT = "no_consent"
    CONSENT_INVALID = "consent_invalid"
    CONSENT_EXPIRED = "consent_expired"
    CONSENT_SUBJECT_MISMATCH = "consent_subject_mismatch"
    BAD_FORMAT = "bad_format"
    SILENT = "silent"
    TOO_SHORT = "too_short"
    NOT_SPEECH = "not_speech"
    SEVERAL_SPEAKERS = "several_speakers"


class EnrolmentRefused(StreamGuardError):
    """Enrolment was refused; ``reason`` is machine-readable, the message is for people."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"enrolment refused ({reason.value}): {detail}")
        self.reason = reason
        self.detail = detail


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise EnrolmentRefused(RefusalReason.CONSENT_INVALID,
                               f"{name} must carry a time zone (naive times are ambiguous)")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """Who consented to whose voiceprint, when, for what, until when, and the proof.

    ``consented_by`` is the subject or their legal representative;
    ``evidence_ref`` points to the proof kept elsewhere (signed form, recorded
    consent prompt), never the proof itself.
    """

    subject_id: str
    consented_by: str
    granted_at: datetime
    purpose: str
    expires_at: datetime
    evidence_ref: str

    def check(self, subject_id: str, now: datetime,
              allowed_purposes: frozenset[str] | None = None,
              clock_skew: timedelta = timedelta(minutes=5)) -> None:
        """Raise :class:`EnrolmentRefused` unless this consent covers ``subject_id`` now."""
        for name in ("subject_id", "consented_by", "purpose", "evidence_ref"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise EnrolmentRefused(RefusalReason.CONSENT_INVALID,
                                       f"consent record has no {name}")
        if self.subject_id != subject_id:
            raise EnrolmentRefused(RefusalReason.CONSENT_SUBJECT_MISMATCH,
                                   f"consent is for {self.subject_id!r}, not {subject_id!r}")
        granted = _utc(self.granted_at, "granted_at")
        expires = _utc(self.expires_at, "expires_at")
        now = _utc(now, "now")
        if expires <= granted:
            raise EnrolmentRefused(RefusalReason.CONSENT_INVALID,
                                   "consent expires before it was granted")
        if granted > now + clock_skew:
            raise EnrolmentRefused(RefusalReason.CONSENT_INVALID,
                                   f"consent is dated in the future ({granted.isoformat()})")
        if now >= expires:
            raise EnrolmentRefused(RefusalReason.CONSENT_EXPIRED,
                                   f"consent expired at {expires.isoformat()}")
        if allowed_purposes is not None and self.purpose not in allowed_purposes:
            raise EnrolmentRefused(RefusalReason.CONSENT_INVALID,
                                   f"purpose {self.purpose!r} is not one of "
                                   f"{sorted(allowed_purposes)}")

    def as_dict(self) -> dict[str, str]:
        return {"subject_id": self.subject_id, "consented_by": self.consented_by,
                "granted_at": self.granted_at.isoformat(), "purpose": self.purpose,
                "expires_at": self.expires_at.isoformat(), "evidence_ref": self.evidence_ref}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsentRecord:
        return cls(str(data["subject_id"]), str(data["consented_by"]),
                   datetime.fromisoformat(str(data["granted_at"])), str(data["purpose"]),
                   datetime.fromisoformat(str(data["expires_at"])), str(data["evidence_ref"]))


@dataclass(frozen=True, slots=True)
class Voiceprint:
    """One enrolled voiceprint: the embedding, how it was made, and its consent.

    ``consistency`` is the cosine between the two most different groups of
    partial embeddings (1.0 = one homogeneous voice); ``speech_seconds`` the
    speech left after silence trimming. No audio is kept.
    """

    voiceprint_id: str
    subject_id: str
    embedding: Float32
    created_at: datetime
    speech_seconds: float
    n_partials: int
    consistency: float
    model: str
    consent: ConsentRecord

    def usable(self, now: datetime) -> bool:
        """False once the consent has expired: such a voiceprint must not be compared."""
        return _utc(now, "now") < _utc(self.consent.expires_at, "expires_at")

    def summary(self) -> dict[str, Any]:
        """Audit-friendly description: everything except the embedding."""
        return {"voiceprint_id": self.voiceprint_id, "subject_id": self.subject_id,
                "created_at": self.created_at.isoformat(),
                "speech_seconds": round(self.speech_seconds, 2),
                "n_partials": self.n_partials, "consistency": round(self.consistency, 4),
                "model": self.model, "consent": self.consent.as_dict()}


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    """Proof that a subject's voiceprints were erased; holds ids, never embeddings."""

    subject_id: str
    erased_at: datetime
    requested_by: str
    reason: str
    voiceprint_ids: tuple[str, ...]
    consent_evidence_refs: tuple[str, ...]

    @property
    def voiceprints_removed(self) -> int:
        return len(self.voiceprint_ids)

    def as_dict(self) -> dict[str, Any]:
        return {"event": "voiceprint_erasure", "subject_id": self.subject_id,
                "erased_at": self.erased_at.isoformat(), "requested_by": self.requested_by,
                "reason": self.reason, "voiceprints_removed": self.voiceprints_removed,
                "voiceprint_ids": list(self.voiceprint_ids),
                "consent_evidence_refs": list(self.consent_evidence_refs)}


class EnrolmentStore(Protocol):
    """Where voiceprints live. Implementations must delete for real on ``delete_subject``."""

    def add(self, voiceprint: Voiceprint) -> None: ...

    def voiceprints(self, subject_id: str) -> list[Voiceprint]: ...

    def subjects(self) -> list[str]: ...

    def delete_subject(self, subject_id: str) -> int:
        """Remove every voiceprint of ``subject_id``; returns how many were removed."""
        ...


class MemoryEnrolmentStore:
    """In-process store (tests, single-node demos); gone when the process ends."""

    def __init__(self) -> None:
        self._by_subject: dict[str, dict[str, Voiceprint]] = {}

    def add(self, voiceprint: Voiceprint) -> None:
        self._by_subject.setdefault(voiceprint.subject_id, {})[
            voiceprint.voiceprint_id] = voiceprint

    def voiceprints(self, subject_id: str) -> list[Voiceprint]:
        return sorted(self._by_subject.get(subject_id, {}).values(), key=lambda v: v.created_at)

    def subjects(self) -> list[str]:
        return sorted(s for s, prints in self._by_subject.items() if prints)

    def delete_subject(self, subject_id: str) -> int:
        return len(self._by_subject.pop(subject_id, {}))


def open_erasable_db(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """A SQLite store of voiceprints where a delete really erases: ``secure_delete``
    overwrites freed pages and the rollback journal (not WAL) keeps no old copies."""
    try:
        db = sqlite3.connect(str(path))
        db.execute("PRAGMA secure_delete = ON")
        db.execute("PRAGMA journal_mode = DELETE")
        db.executescript(schema)
        db.commit()
    except sqlite3.Error as exc:
        raise StreamGuardError(f"cannot open {what} {path}: {exc}") from exc
    return db


class SQLiteEnrolmentStore:
    """Voiceprints in a SQLite file (stdlib ``sqlite3``), one row per voiceprint.

    ``secure_delete`` makes SQLite overwrite deleted rows, so an erased
    voiceprint does not linger in free pages of the file; the rollback
    journal (not WAL) keeps no copy after a transaction commits.
    """

    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS voiceprints (
            voiceprint_id TEXT PRIMARY KEY,
            subject_id TEXT NOT NULL,
            embedding BLOB NOT NULL,
            created_at TEXT NOT NULL,
            speech_seconds REAL NOT NULL,
            n_partials INTEGER NOT NULL,
            consistency REAL NOT NULL,
            model TEXT NOT NULL,
            consent TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS voiceprints_subject ON voiceprints (subject_id);
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_erasable_db(self.path, self._SCHEMA, "enrolment store")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SQLiteEnrolmentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, voiceprint: Voiceprint) -> None:
        embedding = np.asarray(voiceprint.embedding, dtype="<f4").reshape(-1)
        if embedding.shape != (EMBEDDING_DIM,):
            raise ValueError(f"voiceprint embedding must be {EMBEDDING_DIM}-d")
        with self._db:
            self._db.execute(
                "INSERT INTO voiceprints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (voiceprint.voiceprint_id, voiceprint.subject_id, embedding.tobytes(),
                 voiceprint.created_at.isoformat(), voiceprint.speech_seconds,
                 voiceprint.n_partials, voiceprint.consistency, voiceprint.model,
                 json.dumps(voiceprint.consent.as_dict())))

    def voiceprints(self, subject_id: str) -> list[Voiceprint]:
        rows = self._db.execute(
            "SELECT voiceprint_id, subject_id, embedding, created_at, speech_seconds, "
            "n_partials, consistency, model, consent FROM voiceprints WHERE subject_id = ? "
            "ORDER BY created_at", (subject_id,)).fetchall()
        out = []
        for vid, sid, blob, created, seconds, n_partials, consistency, model, consent in rows:
            if len(blob) != EMBEDDING_DIM * 4:
                raise StreamGuardError(f"enrolment store {self.path}: voiceprint {vid} "
                                       "is corrupt")
            out.append(Voiceprint(
                str(vid), str(sid), np.frombuffer(blob, dtype="<f4").astype(np.float32),
                datetime.fromisoformat(created), float(seconds), int(n_partials),
                float(consistency), str(model), ConsentRecord.from_dict(json.loads(consent))))
        return out

    def subjects(self) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT subject_id FROM voiceprints ORDER BY 1")
        return [str(r[0]) for r in rows]

    def delete_subject(self, subject_id: str) -> int:
        with self._db:
            cursor = self._db.execute("DELETE FROM voiceprints WHERE subject_id = ?",
                                      (subject_id,))
        return int(cursor.rowcount)


@dataclass(frozen=True, slots=True)
class EnrolmentPolicy:
    """Quality bars for enrolment audio, with the evidence behind each default.

    * ``min_speech_seconds`` 3.0: below ~3 s the GE2E EER roughly doubles
      (bench/results/speaker.json); enrolment should be the strong side.
    * ``silence_dbfs`` -55: RMS below this is line noise, not a voice.
    * ``max_steady_ratio`` 0.15: fraction of loud frames whose dominant
      spectral peak holds its frequency within 1.5 % for 100 ms. All 190
      shared speech files (wideband and μ-law) score ≤ 0.06, since pitch
      always drifts; synthetic melodies and tones score 0.3–1.0. Music with
      strong vibrato (±3 %), and singing, pass this check.
    * ``max_flatness`` 0.3: median spectral flatness of loud VAD-speech
      frames; shared speech ≤ 0.10, white noise ~0.56.
    * ``min_consistency`` 0.72: cosine between the two 2-means clusters of
      partial embeddings. It refused 2 of 380 single-speaker recordings
      (wideband + μ-law) and caught 98 % of two-speaker concatenations
      (bench/results/speaker.json, "enrolment_consistency").
    """

    min_speech_seconds: float = 3.0
    max_seconds: float = 600.0
    silence_dbfs: float = -55.0
    max_steady_ratio: float = 0.15
    max_flatness: float = 0.3
    min_consistency: float = 0.72
    vad_aggressiveness: int = 3
    allowed_purposes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class AudioQuality:
    """What the audio checks measured (kept with the audit event, not the audio)."""

    duration_seconds: float
    rms_dbfs: float
    vad_speech_seconds: float
    steady_ratio: float
    flatness: float
    consistency: float = field(default=float("nan"))


def _to_float16k(audio: AudioInput, sample_rate: int, max_seconds: float) -> Float32:
    """Any accepted input as mono float32 at 16 kHz, or a BAD_FORMAT refusal."""
    bad = RefusalReason.BAD_FORMAT
    if isinstance(audio, str | Path):
        try:
            decoded = decode_file(audio, SAMPLE_RATE, max_seconds=max_seconds)
        except MediaError as exc:
            raise EnrolmentRefused(bad, str(exc)) from exc
        return pcm16_to_float(decoded.pcm)
    if not isinstance(audio, np.ndarray):
        raise EnrolmentRefused(bad, f"expected a numpy array of samples or a file path, "
                                    f"got {type(audio).__name__}")
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise EnrolmentRefused(bad, f"expected mono samples, got an array of shape {audio.shape}"
                                    " (downmix first)")
    if not 8000 <= sample_rate <= 192000:
        raise EnrolmentRefused(bad, f"sample rate {sample_rate} Hz is not supported")
    if len(audio) > max_seconds * sample_rate:
        raise EnrolmentRefused(bad, f"audio is longer than {max_seconds:.0f} s")
    if audio.dtype == np.int16:
        pcm = audio
    elif audio.dtype in (np.float32, np.float64):
        if not np.isfinite(audio).all():
            raise EnrolmentRefused(bad, "samples contain NaN or infinity")
        if len(audio) and float(np.abs(audio).max()) > 1.0:
            raise EnrolmentRefused(bad, "float samples must lie in [-1, 1] "
                                        "(integer PCM passed as float?)")
        if sample_rate == SAMPLE_RATE:
            return audio.astype(np.float32)
        pcm = float_to_pcm16(audio)
    else:
        raise EnrolmentRefused(bad, f"samples of type {audio.dtype} are not supported; "
                                    "pass int16 PCM or float in [-1, 1]")
    if sample_rate != SAMPLE_RATE:
        resampler = StreamResampler(sample_rate, SAMPLE_RATE)
        pcm = np.concatenate([resampler.push(np.ascontiguousarray(pcm)), resampler.flush()])
    return pcm16_to_float(pcm)


def _spectral_features(wav: Float32, speech: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """(steady-peak ratio, median flatness of speech frames); see :class:`EnrolmentPolicy`."""
    n_fft, hop, span, tol = 1024, 256, 6, 0.015
    if len(wav) < n_fft + span * hop:
        return 0.0, 0.0
    frames = np.lib.stride_tricks.sliding_window_view(wav.astype(np.float64), n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2 + 1e-20
    lo, hi = int(80 * n_fft / SAMPLE_RATE), int(4000 * n_fft / SAMPLE_RATE)
    peak = np.argmax(power[:, lo:hi], axis=1) + lo
    rows = np.arange(len(peak))
    log_p = np.log(power)
    a, b, c = log_p[rows, peak - 1], log_p[rows, peak], log_p[rows, peak + 1]
    curvature = a - 2 * b + c
    offset = 0.5 * (a - c) / np.where(curvature == 0, -1e-12, curvature)
    freq = (peak + np.clip(offset, -0.5, 0.5)) * SAMPLE_RATE / n_fft
    energy = power.sum(axis=1)
    # Within 10 dB of the loud part: a quiet steady hum under speech must not count.
    loud = energy > 0.1 * float(np.percentile(energy, 90))
    n = len(freq) - span
    steady = np.ones(n, dtype=np.bool_)
    for j in range(1, span + 1):
        steady &= np.abs(freq[j:j + n] - freq[:n]) < tol * freq[:n]
    steady_ratio = float(steady[loud[:n]].mean()) if loud[:n].any() else 0.0
    # Flatness (geometric / arithmetic mean of the power spectrum) on frames the VAD marked.
    centres = (np.arange(len(frames)) * hop + n_fft // 2) // FRAME_SAMPLES
    in_speech = speech[np.minimum(centres, len(speech) - 1)] if len(speech) else loud
    band = power[:, lo:hi]
    flatness = np.exp(np.log(band).mean(axis=1)) / band.mean(axis=1)
    chosen = flatness[in_speech & loud]
    return steady_ratio, float(np.median(chosen)) if len(chosen) else 0.0


def _two_group_consistency(partials: Float32) -> float:
    """Cosine between the centroids of a 2-means split of the partial embeddings.

    One voice gives two similar centroids; two voices give two distinct ones.
    Starts from the least similar pair, so it is deterministic.
    """
    if len(partials) < 2:
        return 1.0
    sims = partials @ partials.T
    i, j = np.unravel_index(int(np.argmin(sims)), sims.shape)
    centroids = np.stack([partials[i], partials[j]]).astype(np.float64)
    for _ in range(20):
        labels = np.argmax(partials @ centroids.T, axis=1)
        if len(set(labels.tolist())) < 2:
            return 1.0
        new = np.stack([partials[labels == k].mean(axis=0) for k in (0, 1)])
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        if np.allclose(new, centroids):
            break
        centroids = new
    return float(centroids[0] @ centroids[1])


AuditSink = Callable[[dict[str, Any]], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Enroller:
    """Creates voiceprints from consented audio and erases them on request.

    ``audit`` receives one dict per enrolment, refusal and erasure (no
    embeddings, no audio), for the append-only audit log.
    """

    def __init__(self, encoder: SpeakerEncoder, store: EnrolmentStore,
                 policy: EnrolmentPolicy | None = None, *, audit: AuditSink | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self.encoder = encoder
        self.store = store
        self.policy = policy or EnrolmentPolicy()
        self._audit = audit
        self._clock = clock

    def _emit(self, event: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit(event)

    def check_audio(self, audio: AudioInput, sample_rate: int = SAMPLE_RATE) -> tuple[
            Float32, AudioQuality]:
        """16 kHz float audio that passed the format, level, length and speech checks."""
        p = self.policy
        wav = _to_float16k(audio, sample_rate, p.max_seconds)
        duration = len(wav) / SAMPLE_RATE
        rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if len(wav) else 0.0
        dbfs = 20 * math.log10(rms) if rms > 0 else -math.inf
        if dbfs < p.silence_dbfs:
            raise EnrolmentRefused(RefusalReason.SILENT,
                                   f"the recording is silent (level {dbfs:.0f} dBFS)")
        gate = SpeechGate(p.vad_aggressiveness)
        _, flags = gate.push(float_to_pcm16(wav))
        speech_seconds = float(flags.sum()) * FRAME_SAMPLES / SAMPLE_RATE
        steady, flatness = _spectral_features(wav, flags)
        quality = AudioQuality(duration, dbfs, speech_seconds, steady, flatness)
        if steady > p.max_steady_ratio:
            raise EnrolmentRefused(RefusalReason.NOT_SPEECH,
                                   "the recording sounds like music or tones, not speech "
                                   f"(steady pitch in {100 * steady:.0f} % of frames)")
        if speech_seconds < p.min_speech_seconds:
            raise EnrolmentRefused(
                RefusalReason.TOO_SHORT,
                f"{speech_seconds:.1f} s of speech found, at least "
                f"{p.min_speech_seconds:.1f} s needed (recording is {duration:.1f} s)")
        if flatness > p.max_flatness:
            raise EnrolmentRefused(RefusalReason.NOT_SPEECH,
                                   "the recording sounds like noise, not speech "
                                   f"(spectral flatness {flatness:.2f})")
        return wav, quality

    def enrol(self, subject_id: str, audio: AudioInput, consent: ConsentRecord | None, *,
              sample_rate: int = SAMPLE_RATE) -> Voiceprint:
        """Create and store one voiceprint of ``subject_id``, or raise EnrolmentRefused.

        Consent is checked before the audio is even looked at.
        """
        now = self._clock()
        try:
            if consent is None:
                raise EnrolmentRefused(RefusalReason.NO_CONSENT,
                                       "a consent record is required to enrol a voiceprint")
            consent.check(subject_id, now, self.policy.allowed_purposes)
            wav, quality = self.check_audio(audio, sample_rate)
            utterance = self.encoder.embed_utterance(wav)
            consistency = _two_group_consistency(utterance.partials)
            if consistency < self.policy.min_consistency:
                raise EnrolmentRefused(
                    RefusalReason.SEVERAL_SPEAKERS,
                    "the recording seems to hold more than one voice (consistency "
                    f"{consistency:.2f} < {self.policy.min_consistency:.2f}); "
                    "record the person alone")
        except EnrolmentRefused as refusal:
            self._emit({"event": "enrolment_refused", "subject_id": subject_id,
                        "at": now.isoformat(), "reason": refusal.reason.value,
                        "detail": refusal.detail})
            raise
        voiceprint = Voiceprint(uuid.uuid4().hex, subject_id, utterance.embedding, now,
                                utterance.speech_seconds, len(utterance.partials),
                                consistency, MODEL_NAME, consent)
        self.store.add(voiceprint)
        self._emit({"event": "enrolment", **voiceprint.summary(),
                    "audio": {"duration_seconds": round(quality.duration_seconds, 2),
                              "rms_dbfs": round(quality.rms_dbfs, 1),
                              "vad_speech_seconds": round(quality.vad_speech_seconds, 2),
                              "kept": False}})
        return voiceprint

    def voiceprints(self, subject_id: str) -> list[Voiceprint]:
        """The subject's voiceprints whose consent is still valid."""
        now = self._clock()
        return [v for v in self.store.voiceprints(subject_id) if v.usable(now)]

    def delete_subject(self, subject_id: str, *, requested_by: str,
                       reason: str = "erasure request") -> ErasureRecord:
        """Erase every voiceprint of ``subject_id``; the record names ids, never embeddings."""
        existing = self.store.voiceprints(subject_id)
        removed = self.store.delete_subject(subject_id)
        left = self.store.voiceprints(subject_id)
        if left or removed != len(existing):
            raise StreamGuardError(f"erasure of {subject_id!r} incomplete: {len(left)} "
                                   "voiceprints remain")
        record = ErasureRecord(
            subject_id, self._clock(), requested_by, reason,
            tuple(v.voiceprint_id for v in existing),
            tuple(sorted({v.consent.evidence_ref for v in existing})))
        self._emit(record.as_dict())
        return record

    def purge_expired(self) -> list[ErasureRecord]:
        """Erase subjects whose every voiceprint's consent has expired."""
        now = self._clock()
        records = []
        for subject in self.store.subjects():
            prints = self.store.voiceprints(subject)
            if prints and not any(v.usable(now) for v in prints):
                records.append(self.delete_subject(subject, requested_by="streamguard",
                                                   reason="consent expired"))
        return records
