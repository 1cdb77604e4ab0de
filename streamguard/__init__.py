"""StreamGuard core: sans-I/O judgement of live audio for synthetic speech.

Adapters (``gateway/``) feed media in and carry events out; this package
never opens a socket.
"""

from streamguard.config import GuardConfig
from streamguard.errors import MediaError, ModelError, SessionClosedError, StreamGuardError
from streamguard.events import Action, ActionKind, Event, Notice, State, Verdict
from streamguard.guard import Guard
from streamguard.media.frames import AudioChunk
from streamguard.policy import DEFAULT_POLICY, Policy
from streamguard.session import Session

__all__ = [
    "DEFAULT_POLICY",
    "Action",
    "ActionKind",
    "AudioChunk",
    "Event",
    "Guard",
    "GuardConfig",
    "MediaError",
    "ModelError",
    "Notice",
    "Policy",
    "Session",
    "SessionClosedError",
    "State",
    "StreamGuardError",
    "Verdict",
]
__version__ = "0.1.0"
