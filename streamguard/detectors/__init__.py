"""Detectors turn analysis windows into model inputs and model outputs into scores."""

from streamguard.detectors.voice_clone import VoiceCloneDetector, WindowScore

__all__ = ["VoiceCloneDetector", "WindowScore"]
