"""Where timers wait for their time: a scheduler's schedules, by name.

A committed turn's timers become :class:`Schedule` values, created after the commit (like
effects); when one is due the scheduler hands its ``payload`` back to our function, which
runs the timer's turn. Two schedulers implement :class:`Scheduler`:

- :class:`SQLiteScheduler` (this module): local and tests. Schedules are rows of an SQLite
  file, so they survive a restart of the server; :meth:`SQLiteScheduler.take_due` gives what
  is due by an injectable clock, and whoever runs them reports back (``done``/``failed``).
- ``sessions.eventbridge.EventBridgeScheduler``: the deploy, EventBridge Scheduler (one-time
  ``at()`` schedules deleted after they ran, recurring ``cron()`` ones in their time zone).

Names are ``t.<workspace hash>.<partition hash>.<timer hash>``: a user delete cancels the
timers of the user's partition, and a workspace erase every timer of the workspace, each by
one prefix, and no name carries an id.

Creating is idempotent (a name that exists is left as it is), and so is deleting (a name that
does not exist is fine): both may be retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sessions.privacy import private

log = private(logging.getLogger("sessions.schedules"))

#: One opening of a scheduler's file at a time in this process (see ``SQLiteScheduler``).
_OPENING = threading.Lock()
#: In a schedule's payload, where the scheduler puts the time the fire was due (EventBridge
#: Scheduler replaces this context attribute by an ISO-8601 time; the local one by epoch
#: seconds).
OCCURRENCE = "<aws.scheduler.scheduled-time>"


def _hash(text: str, size: int) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:size]


def workspace_prefix(platform: str, workspace: str) -> str:
    """The name prefix of every timer of a workspace (a Slack team, a Messenger page)."""
    return f"t.{_hash(f'{platform}#{workspace}', 12)}."


def partition_prefix(platform: str, workspace: str, pk: str) -> str:
    """The name prefix of every timer kept in partition ``pk`` (a user's, a channel's)."""
    return f"{workspace_prefix(platform, workspace)}{_hash(pk, 16)}."


def schedule_name(platform: str, workspace: str, pk: str, sk: str, timer_id: str) -> str:
    """A timer's schedule name: 62 characters of ``[0-9a-f.t]``, unique per stored item and
    timer id."""
    return f"{partition_prefix(platform, workspace, pk)}{_hash(f'{sk}#{timer_id}', 28)}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One timer's schedule.

    ``at``: when it is (first) due, epoch seconds; ``cron``/``tz``: it recurs (``at`` is then
    its first time); ``target``: which of our functions fires it (``"slack"``,
    ``"messenger"``); ``payload``: what the fire hands back, with :data:`OCCURRENCE` where
    the due time goes.
    """

    name: str
    at: float
    payload: Mapping[str, Any] = field(default_factory=dict)
    cron: str | None = None
    tz: str = "UTC"
    target: str = ""


class Scheduler(Protocol):
    def create(self, schedule: Schedule) -> None:
        """Create it unless a schedule of that name exists. Raises when it could not (retry)."""
        ...

    def delete(self, name: str) -> None:
        """Delete it (nothing if it does not exist). Raises when it could not (retry)."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every schedule whose name starts with ``prefix``; how many."""
        ...

    def pending(self, prefix: str = "") -> list[Schedule]:
        """The schedules whose names start with ``prefix`` (tools and tests)."""
        ...


def with_occurrence(payload: Mapping[str, Any], occurrence: Any) -> dict[str, Any]:
    """``payload`` with the due time where :data:`OCCURRENCE` stands (as the scheduler does)."""
    text = json.dumps(dict(payload)).replace(json.dumps(OCCURRENCE), json.dumps(occurrence))
    result: dict[str, Any] = json.loads(text)
    return result


# -- the local scheduler ----------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    due REAL NOT NULL,
    cron TEXT,
    tz TEXT NOT NULL,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    occurrence REAL
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (failed, due);
"""


@dataclass(frozen=True, slots=True)
class Due:
    """A schedule whose time came: its ``payload`` carries ``occurrence`` already."""

    name: str
    target: str
    occurrence: float
    payload: dict[str, Any]
    attempts: int


class SQLiteScheduler:
    """Schedules as rows of an SQLite file (``:memory:`` for a process-local one).

    Whoever fires them (the local server's timer loop, a test) calls :meth:`take_due`, runs
    each, then :meth:`done` (a one-time schedule is deleted, a recurring one moves to its next
    time) or :meth:`failed` (tried again after ``backoff`` seconds, doubling, as the same
    occurrence; after ``max_attempts`` it is kept as failed, like the deploy's dead-letter
    queue). ``next_time(cron, tz, after)``: a recurring schedule's next time (the caller's
    cron rule; without it a recurring schedule fires once).
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        next_time: Callable[[str, str, float], float | None] | None = None,
        max_attempts: int = 8,
        backoff: float = 1.0,
    ) -> None:
        import sqlite3  # here: the deploy's functions never open the local scheduler

        self.path = path
        self.next_time = next_time
        self.clock = clock
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        # Several edges (and processes) may open one new file at once: switching it to WAL
        # and creating the table can find it locked without waiting, so try again briefly.
        with _OPENING:
            for attempt in range(100):
                try:
                    if path != ":memory:":
                        self._db.execute("PRAGMA journal_mode = WAL")
                    self._db.executescript(_SCHEMA)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 99:
                        raise
                    time.sleep(0.05)
        #: Set whenever a schedule is created: the loop firing them wakes up.
        self.changed = threading.Event()

    def create(self, schedule: Schedule) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO schedules (name, due, cron, tz, target, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    schedule.name,
                    float(schedule.at),
                    schedule.cron,
                    schedule.tz,
                    schedule.target,
                    json.dumps(dict(schedule.payload)),
                ),
            )
        self.changed.set()

    def delete(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM schedules WHERE name = ?", (name,))

    def delete_prefix(self, prefix: str) -> int:
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM schedules WHERE substr(name, 1, ?) = ?", (len(prefix), prefix)
            )
            return cursor.rowcount

    def pending(self, prefix: str = "") -> list[Schedule]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, due, cron, tz, target, payload FROM schedules "
                "WHERE substr(name, 1, ?) = ? AND failed = 0 ORDER BY due",
                (len(prefix), prefix),
            ).fetchall()
        return [Schedule(r[0], r[1], json.loads(r[5]), r[2], r[3], r[4]) for r in rows]

    def failures(self) -> list[str]:
        """Names of the schedules that failed every attempt."""
        with self._lock:
            rows = self._db.execute("SELECT name FROM schedules WHERE failed = 1").fetchall()
        return [r[0] for r in rows]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT min(due) FROM schedules WHERE failed = 0").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def take_due(self, now: float | None = None) -> list[Due]:
        """The schedules due at ``now`` (default the clock), soonest first."""
        now = self.clock() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT name, coalesce(occurrence, due), target, payload, attempts "
                "FROM schedules WHERE failed = 0 AND due <= ? ORDER BY due, name",
                (now,),
            ).fetchall()
        return [
            Due(name, target, at, with_occurrence(json.loads(payload), at), attempts)
            for name, at, target, payload, attempts in rows
        ]

    def done(self, due: Due) -> None:
        """``due`` ran: a one-time schedule goes, a recurring one moves to its next time."""
        with self._lock:
            row = self._db.execute(
                "SELECT cron, tz, coalesce(occurrence, due) FROM schedules WHERE name = ?",
                (due.name,),
            ).fetchone()
            if row is None or row[2] != due.occurrence:
                return  # deleted, or moved on meanwhile
            following = None
            if row[0] and self.next_time is not None:
                following = self.next_time(row[0], row[1], due.occurrence)
            if following is None:
                self._db.execute("DELETE FROM schedules WHERE name = ?", (due.name,))
            else:
                self._db.execute(
                    "UPDATE schedules SET due = ?, attempts = 0, occurrence = NULL WHERE name = ?",
                    (following, due.name),
                )

    def failed(self, due: Due) -> None:
        """``due`` could not run (the store was unavailable): try again later as the same
        occurrence (the same fire: the same idempotency key); after ``max_attempts``, keep it
        as failed (logged)."""
        attempts = due.attempts + 1
        with self._lock:
            if attempts >= self.max_attempts:
                self._db.execute("UPDATE schedules SET failed = 1 WHERE name = ?", (due.name,))
                log.error("a timer failed %d times; kept as failed", attempts)
                return
            retry_at = self.clock() + self.backoff * 2 ** (attempts - 1)
            self._db.execute(
                "UPDATE schedules SET attempts = ?, due = ?, occurrence = ? WHERE name = ?",
                (attempts, retry_at, due.occurrence, due.name),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = [
    "OCCURRENCE",
    "Due",
    "SQLiteScheduler",
    "Schedule",
    "Scheduler",
    "partition_prefix",
    "schedule_name",
    "with_occurrence",
    "workspace_prefix",
]
