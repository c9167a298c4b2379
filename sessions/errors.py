"""One exception tree for the session core, rooted at :class:`SessionError`.

Stores convert their driver's errors (botocore's ``ClientError``, ``sqlite3.Error``) into these
at the boundary, with ``raise ... from exc``, and carry the evidence (the stored item) where the
engine returns it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions.store import EventRecord, StoredState


class SessionError(Exception):
    """Base class of every error the session core raises."""


class InvalidKeyError(SessionError, ValueError):
    """A key component is empty, too long or outside its platform's id alphabet."""


class CodecError(SessionError):
    """Stored state could not be decoded (unknown schema version, corrupt bytes)."""


class StateTooLargeError(SessionError):
    """The encoded state would not fit in one DynamoDB item (400 KB); nothing was written."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class TurnError(SessionError):
    """The turn function raised; nothing was written. The original error is ``__cause__``."""


class BusyError(SessionError):
    """The conversation stayed contended through every attempt; nothing was written.

    The edge answers 5xx so that the platform redelivers (the event id makes that safe).
    """

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class StoreError(SessionError):
    """The store failed in a way the caller cannot fix by retrying the same request at once."""


class StoreUnavailableError(StoreError):
    """Throttled, or the engine had an internal error: retryable later (the edge answers 5xx)."""


class ConflictError(StoreError):
    """The commit lost a race: the conversation's version moved since it was read.

    ``current`` is the stored state when the engine returned it (DynamoDB's ``ALL_OLD``).
    The turn runner catches this, re-reads and re-runs the pure turn.
    """

    def __init__(self, message: str, *, current: StoredState | None = None) -> None:
        super().__init__(message)
        self.current = current


class DuplicateEventError(StoreError):
    """The commit found the event already recorded: another delivery committed it first.

    ``record`` is the stored event record when the engine returned it.
    """

    def __init__(self, message: str, *, record: EventRecord | None = None) -> None:
        super().__init__(message)
        self.record = record


class StoreConfigError(StoreError):
    """The store is misconfigured (e.g. the table does not exist)."""

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail
