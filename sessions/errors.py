"""One exception tree for the session core, rooted at :class:`SessionError`.

Stores convert their driver's errors (botocore's ``ClientError``, ``sqlite3.Error``) into these
at the boundary, with ``raise ... from exc``, and carry the evidence (the stored item) where the
engine returns it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessions.store import EventRecord, StoredState, Tombstone


class SessionError(Exception):
    """Base class of every error the session core raises."""


class InvalidKeyError(SessionError, ValueError):
    """A key component is empty, too long or outside its platform's id alphabet.

    Bad input: the edge answers 4xx before anything is read or written.
    """


class PermanentError(SessionError):
    """An error that would happen again on every delivery of the same event.

    A bug in the bot, a stored state that no longer decodes, a state or record too large for
    one item. Redelivering cannot heal it, so the turn runner records the event once as a
    *dead letter* (an event record marked failed, with this error's class and message, and
    what a replay needs) and raises; the edge answers 200 (with an apology where one can be
    sent) instead of a 5xx that the platform would retry forever. ``recorded`` says whether
    the dead letter was written by this delivery.
    """

    recorded: bool = False


class CodecError(PermanentError):
    """State could not be encoded or decoded (unknown schema version, corrupt bytes)."""


class ItemTooLargeError(PermanentError):
    """An item would not fit in DynamoDB's 400 KB; nothing was written."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class StateTooLargeError(ItemTooLargeError):
    """The encoded state would not fit in one item; nothing was written."""


class TurnError(PermanentError):
    """The turn function raised; nothing was written. The original error is ``__cause__``."""


class BusyError(SessionError):
    """The conversation stayed contended through every attempt (or past the turn's deadline);
    nothing was written.

    The edge answers 5xx so that the platform redelivers (the event id makes that safe).
    """

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class StoreError(SessionError):
    """The store failed in a way the caller cannot fix by retrying the same request at once."""


class StoreUnavailableError(StoreError):
    """Throttled, unreachable, timed out, no credentials, or the engine had an internal error:
    retryable later (the edge answers 5xx)."""


class ConflictError(StoreError):
    """The commit lost a race: the conversation's version moved since it was read.

    ``current`` is the stored state when the engine returned it (DynamoDB's ``ALL_OLD``);
    ``tombstone`` the user's tombstone when the commit was refused because of it (a store
    that does not read the tombstone on every load learns it this way). The turn runner
    catches this, re-reads and re-runs the pure turn.
    """

    def __init__(
        self,
        message: str,
        *,
        current: StoredState | None = None,
        tombstone: Tombstone | None = None,
    ) -> None:
        super().__init__(message)
        self.current = current
        self.tombstone = tombstone


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
