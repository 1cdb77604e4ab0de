"""Speaker embeddings: the GE2E encoder (torch-free) and running per-call voiceprints.

Similarity between voices is evidence of *who* speaks, not of *whether the
voice is real*: a good clone scores 0.77–0.94 against the real person, inside
the range of their own genuine clips. Impersonation decisions must combine it
with the synthetic-speech evidence (models/SPEAKER.md).
"""

from streamguard.speaker.checkpoint import CheckpointError, read_checkpoint, read_state_dict
from streamguard.speaker.encoder import (
    EMBEDDING_DIM,
    MODEL_NAME,
    RESEMBLYZER_VERSION,
    SpeakerEncoder,
    UtteranceEmbedding,
    cosine,
    default_checkpoint,
    embed_speaker,
)
from streamguard.speaker.mel import mel_spectrogram, partial_mels, preprocess
from streamguard.speaker.voiceprint import RunningVoiceprint, Similarity

__all__ = [
    "EMBEDDING_DIM",
    "MODEL_NAME",
    "RESEMBLYZER_VERSION",
    "CheckpointError",
    "RunningVoiceprint",
    "Similarity",
    "SpeakerEncoder",
    "UtteranceEmbedding",
    "cosine",
    "default_checkpoint",
    "embed_speaker",
    "mel_spectrogram",
    "partial_mels",
    "preprocess",
    "read_checkpoint",
    "read_state_dict",
]
