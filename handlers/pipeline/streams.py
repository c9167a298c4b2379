"""Streamed answers (``@effect(name, stream=True)``): one message per event, finished by
whoever runs the effect last, never opened twice.

The effect's function yields text (a model's answer). Its run is a chain of conditional
writes, each made *before* the platform call it stands for, so that of any number of runs
(a redelivered event's, a retried job's, one in a Lambda that died mid-answer) only one does
each call::

    claim effect:<key>           ─► the first run; a later one resumes (below)
    startStream                  ─► Slack answers the stream's ts
    claim effect:<key>#ts {ts}   ─► the ts, sealed, beside the effect's claim, before any append
    record a1 {n, h}, append     ─► per buffered chunk: chars on the platform so far, and a
    record a2 {n, h}, append        chained hash of them (a record of its own, no user data)
    ...
    record stop {n}, stopStream  ─► with the rest of the text (and an error line on failure)
    follow-up turn               ─► Message(kind="effect", result=<the full text>)

A run that finds the effect claimed resumes: stopped already, nothing to do; else it runs the
function again, reads how far the stream got (the ts, then the records a1, a2, ... until one
is missing), checks its new text against the recorded hash and appends only what is missing.
A model that answers differently the second time cannot be spliced: the retry then appends a
blank line and its whole new answer (the message still ends with one complete answer, which
is also what the follow-up gets). Two runs at once (a retry while the first still lives) meet
at the next record: the loser stops writing, the winner finishes.

A run that finds the chain updated less than :data:`STALE_AFTER` seconds ago leaves it to
the run that is still streaming (``BusyError``: retried later, by then it is finished).

Windows this leaves (each one store write wide, documented in docs/streaming.md): a crash
between Slack's answer to ``startStream`` and the ts's claim leaves an empty stream no run
can find (the retry opens the one that gets the answer); a crash between a chunk's record and
its append loses that chunk (at most once, like a reply); the follow-up turn after a crash
past ``stop`` is not run again.

Cost, on DynamoDB: the effect's claim and the ts's claim (a transaction each, as any claim),
one conditional ``PutItem`` per chunk appended, one for the stop; a cancellable effect
(``cancel_on_message``) also reads one record at most every :data:`CANCEL_EVERY` seconds,
and each user message of such a bot writes one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bot.base import EffectCall
from bot.messages import Message
from bot.spec import STREAM_CANCELLED_LINE, STREAM_ERROR_LINE, stream_chunks
from sessions import BusyError, ConversationKey, SessionError, Sessions
from sessions.privacy import private
from sessions.runner import CLAIMED, LATE

if TYPE_CHECKING:
    from handlers.pipeline import Pipeline
    from handlers.pipeline.delivery import Delivery, EffectJob

log = private(logging.getLogger("handlers.streams"))

#: Characters kept before an append (slack_sdk's ``ChatStream`` buffers 256 by default):
#: one Slack call and one store write per this much text, not per token.
BUFFER_CHARS = 256
#: Seconds a non-empty buffer may wait for more text before it is appended anyway.
BUFFER_SECONDS = 0.5
#: Slack takes up to 12,000 characters of markdown per call.
CALL_CHARS = 12_000
#: Seconds between two reads of a cancellable stream's cancel mark.
CANCEL_EVERY = 1.0
#: How long the chain's records live (as long as an event's record: a retry comes sooner).
RECORD_TTL = 24 * 3600
#: How long a cancel mark lives (longer than any answer streams).
CANCEL_TTL = 3600
#: Seconds without progress after which a run of the effect counts as dead, and another may
#: finish its stream. A run that finds fresher progress leaves it to the live run (the
#: platform's or the deferral's retry comes later: a Lambda async retry after a minute).
STALE_AFTER = 10

#: What closes a stream whose effect failed (never the exception's text: that is the bot's).
ERROR_LINE = STREAM_ERROR_LINE
#: What closes a stream a newer message of the user stopped.
CANCELLED_LINE = STREAM_CANCELLED_LINE
#: ``Message.error`` of the follow-up of a cancelled stream.
CANCELLED = "Cancelled"


class StreamTarget(Protocol):
    """Where a streamed answer goes, one per platform (the edge builds it for a delivery)."""

    #: ``True``: the platform cannot show a growing message (Messenger, Instagram, a Slack
    #: exchange with no thread): nothing is appended, ``stop`` gets the whole text.
    whole: bool

    def open(self) -> str:
        """Start the answer (Slack: ``chat.startStream``; Messenger: a typing indicator);
        return what names it (the stream's ``ts``; ``""`` where there is none)."""
        ...

    def append(self, ref: str, text: str) -> None:
        """Append ``text`` (at most :data:`CALL_CHARS`) to the answer."""
        ...

    def stop(self, ref: str, text: str) -> None:
        """End the answer, with ``text`` (may be empty) as its last part."""
        ...


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How a pipeline streams (``Pipeline.streaming``)."""

    buffer_chars: int = BUFFER_CHARS
    buffer_seconds: float = BUFFER_SECONDS
    cancel_every: float = CANCEL_EVERY


class Superseded(Exception):
    """Another run of the same effect took the stream over: this one stops writing."""


class Cancelled(Exception):
    """A newer user message stopped the answer."""


def _chain(previous: str, text: str) -> str:
    return hashlib.sha256((previous + "\x00" + text).encode()).hexdigest()[:32]


def records_pk(effect_key: str) -> str:
    """The partition of an effect's stream records: the effect key (a hash) and no id."""
    return f"stream#{effect_key}"


def cancel_pk(key: ConversationKey) -> str:
    """The partition of a conversation's (a thread's) cancel mark: a hash of its key."""
    digest = hashlib.sha256(f"{key.pk}\x00{key.sk}".encode()).hexdigest()[:40]
    return f"stream-cancel#{digest}"


@dataclass
class Progress:
    """How far a stream got, as its records say."""

    ts: str | None = None
    #: ``(n, h)`` of each recorded append, in order.
    appends: list[tuple[int, str]] = field(default_factory=list)
    stopped: bool = False
    #: When the newest claim or record of the chain was written (store clock, seconds).
    updated_at: int = 0


def _claim_payload(sessions: Sessions, key: ConversationKey, token: str) -> tuple[int | None, Any]:
    """When ``token`` was claimed in ``key``'s partition (``None``: it is not, or expired),
    and the claim's payload."""
    snap = sessions.store.load(key, key.event_sk(token), exact=True)
    record = snap.event
    if record is None or record.expires_at <= int(sessions.clock()):
        return None, None
    return record.committed_at, sessions.claimed(key, record)


def read_progress(sessions: Sessions, key: ConversationKey, base: str, effect_key: str) -> Progress:
    """What an earlier run of the effect left (a retry's reads: one per record)."""
    progress = Progress()
    pk = records_pk(effect_key)
    if sessions.store.get_record(pk, "stop") is not None:
        progress.stopped = True
        return progress
    claimed_at, _ = _claim_payload(sessions, key, base)
    progress.updated_at = claimed_at or 0
    opened_at, opened = _claim_payload(sessions, key, base + "#ts")
    if opened_at is None or not isinstance(opened, dict):
        return progress
    progress.ts = str(opened.get("ts") or "")
    progress.updated_at = max(progress.updated_at, opened_at)
    while True:
        got = sessions.store.get_record(pk, f"a{len(progress.appends) + 1:05d}")
        if got is None:
            return progress
        data = json.loads(got[0])
        progress.appends.append((int(data["n"]), str(data["h"])))
        progress.updated_at = max(progress.updated_at, got[1] - RECORD_TTL)


class Writer:
    """The buffer between the model and the platform: appends in chunks of
    :data:`BUFFER_CHARS` (or after :data:`BUFFER_SECONDS`), each recorded before it goes."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        target: StreamTarget,
        ref: str,
        effect_key: str,
        done: list[tuple[int, str]],
        buffer_chars: int = BUFFER_CHARS,
        buffer_seconds: float = BUFFER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.target = target
        self.ref = ref
        self.pk = records_pk(effect_key)
        self.buffer_chars = max(1, buffer_chars)
        self.buffer_seconds = buffer_seconds
        self.clock = clock
        #: The text this run generated (what the follow-up gets).
        self.text = ""
        #: Text generated but not yet on the platform.
        self.pending = ""
        #: An earlier run's appends, until this run's text is checked against them.
        self.resume = list(done)
        self.shown = done[-1][0] if done else 0  # characters on the platform
        self.hash = done[-1][1] if done else ""
        self.count = len(done)  # records written
        self.flushed_at = clock()
        self.appends = 0  # appends this run made

    def add(self, piece: str) -> None:
        self.text += piece
        if self.resume:
            if len(self.text) < self.resume[-1][0]:
                return  # not yet as far as the earlier run got
            self._check_resume()
        else:
            self.pending += piece
        if self.target.whole:
            return
        due = self.appends == 0 and not self.count  # the first text goes at once
        due = due or len(self.pending) >= self.buffer_chars
        due = due or self.clock() - self.flushed_at >= self.buffer_seconds
        if self.pending and due:
            self.flush()

    def _check_resume(self, *, ended: bool = False) -> None:
        """Compare this run's text with what the earlier run appended: the same (a
        deterministic source), append only the rest; else a blank line and all of it."""
        chain, start = "", 0
        for n, _h in self.resume:
            chain = _chain(chain, self.text[start:n])
            start = n
        if not ended and chain == self.resume[-1][1]:
            self.pending = self.text[self.resume[-1][0] :]
        else:
            log.info("a resumed stream's text differs from the first run's; appended whole")
            self.pending = "\n\n" + self.text
        self.resume = []

    def flush(self, *, keep: int = 0) -> None:
        """Append what is pending (all but the last ``keep`` characters)."""
        while len(self.pending) > keep:
            size = min(CALL_CHARS, len(self.pending) - keep)
            chunk, self.pending = self.pending[:size], self.pending[size:]
            shown, digest = self.shown + len(chunk), _chain(self.hash, chunk)
            self.count += 1
            record = json.dumps({"n": shown, "h": digest}).encode()
            now = int(self.sessions.clock())
            if not self.sessions.store.create_record(
                self.pk, f"a{self.count:05d}", record, expires_at=now + RECORD_TTL, now=now
            ):
                raise Superseded("another run of this effect appended first")
            self.target.append(self.ref, chunk)
            self.shown, self.hash = shown, digest
            self.appends += 1
        self.flushed_at = self.clock()

    def finish(self, tail: str = "") -> str:
        """The text ``stop`` carries: the rest (what exceeds one call appended first),
        then ``tail``; the stop recorded first."""
        if self.resume:
            self._check_resume(ended=True)
        last = self.pending + (
            ("\n\n" if self.pending or self.shown else "") + tail if tail else ""
        )
        if len(last) > CALL_CHARS and not self.target.whole:
            self.pending = last
            self.flush(keep=CALL_CHARS)
            last = self.pending
        now = int(self.sessions.clock())
        record = json.dumps({"n": self.shown + len(last)}).encode()
        if not self.sessions.store.create_record(
            self.pk, "stop", record, expires_at=now + RECORD_TTL, now=now
        ):
            raise Superseded("another run of this effect stopped the stream")
        self.pending = ""
        return last


def run_stream(pipeline: Pipeline, job: EffectJob) -> Message | None:
    """Claim, stream and stop one streamed effect (or finish an earlier run's stream); the
    follow-up message (``None``: nothing follows: another run did or does it, the user was
    deleted, or the effect asks for none).

    Raises:
        SessionError: a claim or record could not be written and it can heal: nothing more
            went out (retry the job: the retry resumes).
    """
    sessions, origin, spec = pipeline.sessions, job.origin, pipeline.spec
    name = job.effect.name
    key = pipeline.keys(origin)[0]
    base = f"effect:{job.effect_key}"
    got = sessions.claim_outcome(key, base, event_time=origin.event_time)
    if got == LATE:
        return None
    progress = Progress()
    if got != CLAIMED:
        progress = read_progress(sessions, key, base, job.effect_key)
        if progress.stopped:
            log.info("streamed effect %s already finished", name)
            return None
        if int(sessions.clock()) - progress.updated_at < STALE_AFTER:
            # Another run is (or was a moment ago) streaming it: try again later.
            raise BusyError(
                f"streamed effect {name!r} is being streamed by another run", attempts=1
            )
        log.info("streamed effect %s resumed (%d appends done)", name, len(progress.appends))
    target: StreamTarget = pipeline.platform.stream_target(origin)
    ref = progress.ts
    if ref is None:
        ref = target.open()
        opened = sessions.claim_outcome(
            key, base + "#ts", event_time=origin.event_time, payload={"ts": ref}
        )
        if opened != CLAIMED:  # another run recorded its stream first: it answers
            log.warning("streamed effect %s: a second stream was opened and is left empty", name)
            return None
    writer = Writer(
        sessions=sessions,
        target=target,
        ref=ref,
        effect_key=job.effect_key,
        done=progress.appends,
        buffer_chars=pipeline.streaming.buffer_chars,
        buffer_seconds=pipeline.streaming.buffer_seconds,
    )
    cancellable = spec.streams[name].cancel_on_message
    checked = time.monotonic()
    error: str | None = None
    tail = ""
    function = spec.effects.get(name)
    result: Any = None
    chunks: Any = None
    try:
        try:
            if function is None:
                raise LookupError(f"no @effect({name!r}) method")
            result = function[0](job.effect.args, EffectCall(name, job.effect_key, origin.message))
            chunks = stream_chunks(result)
            for piece in chunks:
                writer.add(piece)
                if cancellable and time.monotonic() - checked >= pipeline.streaming.cancel_every:
                    checked = time.monotonic()
                    if cancelled(sessions, key, origin):
                        raise Cancelled
        except Cancelled:
            _close(chunks, result)  # the model's request ends here too
            error, tail = CANCELLED, CANCELLED_LINE
            log.info("streamed effect %s cancelled by a newer message", name)
        except (Superseded, SessionError):
            raise
        except Exception as exc:
            error, tail = f"{type(exc).__name__}: {exc}", ERROR_LINE
            log.warning("streamed effect %s failed: %s", name, type(exc).__name__)
        last = writer.finish(tail)
    except Superseded:
        log.info("streamed effect %s: another run took the stream over", name)
        return None
    target.stop(ref, last)
    if not job.effect.follow_up:
        return None
    return Message(
        kind="effect",
        action=name,
        result=writer.text,
        error=error,
        platform=origin.message.platform,
        workspace=origin.message.workspace,
        conversation=origin.message.conversation,
        user=origin.message.user,
        time=origin.message.time,
        thread=origin.message.thread,
    )


def _close(*iterators: Any) -> None:
    for iterator in iterators:
        close = getattr(iterator, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.warning("a cancelled stream's source did not close cleanly", exc_info=True)


def note_message(pipeline: Pipeline, delivery: Delivery) -> None:
    """A user message in a conversation (a thread) of a bot whose streamed answers a message
    cancels: mark its time, for a stream of that conversation to see. Never raises."""
    key = pipeline.keys(delivery)[0]
    try:
        now = int(pipeline.sessions.clock())
        at = delivery.event_time if delivery.event_time is not None else float(now)
        pipeline.sessions.store.put_record(
            cancel_pk(key), "latest", json.dumps({"at": at}).encode(), expires_at=now + CANCEL_TTL
        )
    except Exception:
        log.warning("a message could not mark its streams cancelled", exc_info=True)


def cancelled(sessions: Sessions, key: ConversationKey, origin: Delivery) -> bool:
    """Whether a user message newer than the stream's origin came in its conversation."""
    try:
        got = sessions.store.get_record(cancel_pk(key), "latest")
    except Exception:
        log.warning("a stream's cancel mark could not be read", exc_info=True)
        return False
    if got is None or origin.event_time is None:
        return False
    return float(json.loads(got[0]).get("at") or 0) > origin.event_time


__all__ = [
    "BUFFER_CHARS",
    "BUFFER_SECONDS",
    "CANCELLED",
    "CANCELLED_LINE",
    "ERROR_LINE",
    "StreamTarget",
    "Writer",
    "note_message",
    "run_stream",
]
