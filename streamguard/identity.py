"""Live impersonation check: is the caller the person the call claims, and is the voice real?

A call may claim an identity (Twilio ``customParameters``, AudioHook
participant data, or an API call mid-call). The session then embeds its
speech in 1.6 s partials with the GE2E encoder (through a micro-batcher in
the inference pool, like the anti-spoofing windows), keeps a running
voiceprint, and compares it with the claimed person's enrolled voiceprints.

Speaker similarity alone cannot catch a good clone: clones measured here
scored 0.77–0.94 against the real person, inside the range of their own
clips. So a match is only ``voice_match`` when the synthetic-speech evidence
is low, and ``cloned_voice`` when it is high (models/SPEAKER.md).

Thresholds (cosine, GE2E, ``../shared/reference/ge2e/speaker_eval.json``):
full utterances of one speaker score 0.75–0.96 (mean 0.87), of different
speakers 0.33–0.73 (mean 0.52); 1.6 s crops sit ~0.1 lower. ``match_at``
0.70 accepts when the call's running voiceprint is above the different-
speaker range of crops and near the same-speaker mean minus two spreads;
``mismatch_below`` 0.60 rejects only when even the interval's upper end is
below it, so a short or noisy call stays ``inconclusive`` rather than
accusing a genuine customer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from streamguard.enrolment import EnrolmentStore
from streamguard.inference.batcher import MicroBatcher
from streamguard.speaker import (
    MODEL_NAME,
    RunningVoiceprint,
    Similarity,
    SpeakerEncoder,
    mel_spectrogram,
)
from streamguard.speaker.mel import PARTIAL_FRAMES, PARTIAL_SAMPLES, normalize_volume

Float32 = npt.NDArray[np.float32]


class IdentityStatus(StrEnum):
    NOT_ENROLLED = "not_enrolled"  # the claimed person has no usable voiceprint
    VERIFYING = "verifying"  # not enough speech yet
    INCONCLUSIVE = "inconclusive"  # similarity between the bars
    VOICE_MATCH = "voice_match"  # the claimed person's voice, no sign of synthesis
    VOICE_MISMATCH = "voice_mismatch"  # someone else's voice
    CLONED_VOICE = "cloned_voice"  # the claimed person's voice, but synthetic


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """``claim_keys``: session metadata keys that name the claimed person.
    ``min_partials``: speech partials (1.6 s each) before any decision.
    ``clone_probability``: P(synthetic) from the voice-clone fusion above
    which a matching voice counts as cloned."""

    claim_keys: tuple[str, ...] = ("claimed_id", "customer_id")
    min_partials: int = 3
    match_at: float = 0.70
    mismatch_below: float = 0.60
    clone_probability: float = 0.7
    max_pending: int = 2


def judge(similarity: Similarity, p_synthetic: float | None, config: IdentityConfig,
          n_partials: int) -> IdentityStatus:
    """The decision table above, in one place."""
    if n_partials < config.min_partials:
        return IdentityStatus.VERIFYING
    if similarity.high < config.mismatch_below:
        return IdentityStatus.VOICE_MISMATCH
    if similarity.value >= config.match_at:
        if p_synthetic is not None and p_synthetic >= config.clone_probability:
            return IdentityStatus.CLONED_VOICE
        return IdentityStatus.VOICE_MATCH
    return IdentityStatus.INCONCLUSIVE


def embed_partials_fn(encoder: SpeakerEncoder) -> Callable[[Float32], Float32]:
    """Batch function for the micro-batcher: (B, 25 600) speech → (B, 256) embeddings.

    Runs in the inference pool, so the mel front end (about 1 ms a partial)
    stays off the event loop too.
    """

    def run(batch: Float32) -> Float32:
        mels = np.stack([mel_spectrogram(normalize_volume(row))[:PARTIAL_FRAMES]
                         for row in batch])
        return encoder.embed_partials(mels)

    return run


class SpeechPartials:
    """Collects speech-only audio (VAD-flagged frames) into 1.6 s partials."""

    def __init__(self) -> None:
        self._parts: list[npt.NDArray[np.int16]] = []
        self._samples = 0

    def push(self, frames: npt.NDArray[np.int16], flags: npt.NDArray[np.bool_],
             frame_samples: int) -> list[Float32]:
        if len(flags):
            speech = frames[: len(flags) * frame_samples].reshape(len(flags), frame_samples)
            kept = speech[flags].reshape(-1)
            if len(kept):
                self._parts.append(kept)
                self._samples += len(kept)
        out: list[Float32] = []
        while self._samples >= PARTIAL_SAMPLES:
            joined = np.concatenate(self._parts)
            out.append(joined[:PARTIAL_SAMPLES].astype(np.float32) / 32768.0)
            rest = joined[PARTIAL_SAMPLES:]
            self._parts, self._samples = ([rest] if len(rest) else []), len(rest)
        return out


class ClaimTracker:
    """One call's voiceprint against one claimed person's enrolled voiceprint."""

    def __init__(self, claimed_id: str, reference: Float32 | None, config: IdentityConfig,
                 model: str) -> None:
        self.claimed_id = claimed_id
        self.reference = reference
        self.config = config
        self.model = model
        self.voiceprint = RunningVoiceprint()
        self.partials = SpeechPartials()
        self.status: IdentityStatus | None = None

    def add(self, embedding: Float32) -> None:
        self.voiceprint.add(embedding)

    def similarity(self) -> Similarity | None:
        if self.reference is None or self.voiceprint.n_windows == 0:
            return None
        return self.voiceprint.similarity(self.reference)


class IdentityService:
    """Guard-wide parts of the check: the encoder's batcher and the enrolled voiceprints.

    ``lookup`` returns the claimed person's enrolled embeddings made with
    this encoder and still under valid consent (expired consent means the
    voiceprint may not be used, even before it is purged).
    """

    def __init__(self, encoder: SpeakerEncoder, lookup: Callable[[str], list[Float32]],
                 config: IdentityConfig, batcher: MicroBatcher) -> None:
        self.encoder = encoder
        self.model = MODEL_NAME
        self.lookup = lookup
        self.config = config
        self.batcher = batcher

    def reference(self, subject_id: str) -> Float32 | None:
        embeddings = self.lookup(subject_id)
        if not embeddings:
            return None
        mean = np.mean(np.stack(embeddings), axis=0)
        norm = float(np.linalg.norm(mean))
        return (mean / norm).astype(np.float32) if norm > 0 else None


def store_lookup(store: EnrolmentStore, model: str,
                 clock: Callable[[], datetime]) -> Callable[[str], list[Float32]]:
    def lookup(subject_id: str) -> list[Float32]:
        now = clock()
        return [vp.embedding for vp in store.voiceprints(subject_id)
                if vp.model == model and vp.usable(now)]

    return lookup


class CallVoiceTracker:
    """One call's running voiceprint for the fleet (bulk deception, watchlists).

    Kept apart from :class:`ClaimTracker`: it follows every caller leg from
    the start, whether or not an identity is claimed, and a new claim does not
    reset it. ``due`` says when the next summary should go to the fleet.
    """

    def __init__(self) -> None:
        self.voiceprint = RunningVoiceprint()
        self.partials = SpeechPartials()
        self.sent_at_speech = 0.0
        self.summaries = 0
        self.watch_hits: set[str] = set()

    def add(self, embedding: Float32) -> None:
        self.voiceprint.add(embedding)

    @property
    def speech_seconds(self) -> float:
        return self.voiceprint.speech_seconds

    def due(self, first_s: float, every_s: float) -> bool:
        speech = self.speech_seconds
        if self.summaries == 0:
            return speech >= first_s
        return speech - self.sent_at_speech >= every_s

    def mark_sent(self) -> None:
        self.sent_at_speech = self.speech_seconds
        self.summaries += 1
