"""Exceptions the core raises; adapters turn them into protocol errors."""


class StreamGuardError(Exception):
    """Base class for every error StreamGuard reports on purpose."""


class MediaError(StreamGuardError):
    """Media that cannot be decoded, is empty, too short, or malformed."""


class ModelError(StreamGuardError):
    """A model file or its metadata is missing, unreadable, or inconsistent."""


class SessionClosedError(StreamGuardError):
    """Media was fed to a session that has already been closed."""
