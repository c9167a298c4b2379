"""What one delivery came to: :class:`TurnResult` for the caller, :class:`TurnReport` for the
observer (logs and metrics), and the store timing that fills the report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sessions.errors import BusyError, PermanentError
from sessions.keys import ConversationKey
from sessions.store import Store


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


#: What a turn returns as its new state when the event is moot (a timer's fire for a timer
#: that is gone): the runner writes nothing, not even the event's record, and sends nothing.
#: Only for events whose replay is harmless: running it again finds it moot again. The
#: turn's ``response`` is kept in the result (``ignored``), so the caller learns why.
NOTHING: Any = _Nothing()


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What happened to one delivery.

    ``duplicate``: the event was already committed; ``response`` is the first delivery's
    (``None`` once it is older than the response TTL). ``failed``: (with ``duplicate``) the
    event is a dead letter, ``error`` says why. ``ignored``: the user was deleted after the
    event happened, or the turn returned :data:`NOTHING`; nothing was stored.
    ``send_error``: the sender raised after the commit (logged; the state change stands).
    """

    response: Any
    replies: tuple[Any, ...] = ()
    #: What the committed turn asked to start after it (also on a duplicate that resent an
    #: unmarked outbox in ``sent_mark`` mode: claims keep each effect to one run).
    effects: tuple[Any, ...] = ()
    #: ``hold_mark`` left the sent mark to the caller (:meth:`Sessions.mark_sent`).
    mark_pending: bool = False
    state: Any = None
    version: int | None = None
    duplicate: bool = False
    ignored: bool = False
    failed: bool = False
    error: str | None = None
    attempts: int = 1
    sent: bool = False
    send_error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TurnReport:
    """One delivery as the observer sees it (after the turn, whatever its outcome).

    ``outcome``: ``applied`` (committed), ``duplicate`` (already committed; ``replayed``
    when its recorded response was served), ``ignored`` (the user was deleted after the
    event), ``dead_lettered`` (a permanent error, recorded once; also a redelivery of a dead
    letter), ``busy`` (every attempt lost a race) or ``error`` (the store or the key service
    failed; the platform redelivers). ``store_ms``/``store_calls``: time in, and calls to,
    the store; ``large_reads``/``large_writes``: large-state objects read and written (S3);
    ``key_requests``: key-service (KMS) requests the turn made; ``read_units``/
    ``write_units``: capacity the store reported (DynamoDB; ``None`` for a store that does
    not report it).
    """

    key: ConversationKey
    idempotency_key: str
    outcome: str
    attempts: int
    turn_ms: float
    store_ms: float
    store_calls: int
    large_reads: int = 0
    large_writes: int = 0
    read_units: float | None = None
    write_units: float | None = None
    replayed: bool = False
    sent: bool | None = None
    send_error: str | None = None
    error: str | None = None
    key_requests: int = 0


#: Receives a :class:`TurnReport` after every delivery; its errors are logged, never raised.
Observer = Callable[[TurnReport], None]


class Timed:
    """The store, timed: every call's duration and count, per thread (one turn at a time on a
    thread), for the turn's report."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._local = threading.local()

    def take(self) -> tuple[float, int]:
        taken = (getattr(self._local, "ms", 0.0), getattr(self._local, "calls", 0))
        self._local.ms, self._local.calls = 0.0, 0
        return taken

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr
        local = self._local

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                local.ms = getattr(local, "ms", 0.0) + (time.perf_counter() - started) * 1000
                local.calls = getattr(local, "calls", 0) + 1

        return timed


def report_of(
    key: ConversationKey,
    idempotency_key: str,
    result: TurnResult | None,
    failure: BaseException | None,
    turn_ms: float,
    store_ms: float,
    store_calls: int,
) -> TurnReport:
    attempts = result.attempts if result else getattr(failure, "attempts", 1)
    common: dict[str, Any] = {
        "key": key,
        "idempotency_key": idempotency_key,
        "attempts": attempts,
        "turn_ms": round(turn_ms, 3),
        "store_ms": round(store_ms, 3),
        "store_calls": store_calls,
    }
    if result is None:
        if isinstance(failure, PermanentError):
            outcome = "dead_lettered"
        elif isinstance(failure, BusyError):
            outcome = "busy"
        else:
            outcome = "error"
        error = f"{type(failure).__name__}: {failure}"[:300] if failure else None
        return TurnReport(outcome=outcome, error=error, **common)
    if result.ignored:
        outcome = "ignored"
    elif result.failed:
        outcome = "dead_lettered"
    elif result.duplicate:
        outcome = "duplicate"
    else:
        outcome = "applied"
    sent = result.sent if (result.replies or result.sent or result.send_error) else None
    return TurnReport(
        outcome=outcome,
        replayed=result.duplicate and result.response is not None,
        sent=sent,
        send_error=type(result.send_error).__name__ if result.send_error else None,
        error=result.error,
        **common,
    )
