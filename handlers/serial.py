"""The serialised path for a busy scope: turns that kept losing their race on one item (a poll
everyone votes in at once) until the webhook's deadline, run one at a time per item.

Many writers on one item cost optimistic retries in proportion to how many race: the whole
burst, in proportion to their square, and some would pass the platform's deadline. A delivery
still busy at its deadline is handed here instead (nothing was committed: the store's event
record still decides "once"). Its *group* is the item's key, hashed: the turns of one item run
in order, one at a time, so they no longer race each other; different items run in parallel::

    webhook ─► turn lost its race until the deadline ─► submit(job, group = hash(item key))
                                                         │
          deploy: SQS FIFO queue, MessageGroupId = group ┴─► consumer Lambda (``handler``):
                  one group's messages in order; a failed one (and the rest of its group in
                  the batch) is reported back, retried, then kept in the queue's DLQ
          locally: a thread per busy group, its jobs in order

This module imports boto3 (lazily, for the queue). The Messenger path does not import
``slack_bolt`` through it (neither edge does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from handlers.deferral import DEFERRED_KEY, Job, run_with_retries
from sessions.privacy import private

if TYPE_CHECKING:
    from handlers.settings import Settings

log = private(logging.getLogger("handlers.serial"))

#: The most jobs of one group run as one group commit (what SQS FIFO hands a consumer).
BATCH = 10


class Serialiser(Protocol):
    def submit(self, job: Job, group: str) -> None:
        """Queue ``job`` behind the other jobs of ``group``; raise if it could not be queued."""
        ...


def group_of(pk: str, sk: str) -> str:
    """A message group for an item: its key hashed (no id leaves in clear; 64 hex)."""
    return hashlib.sha256(f"{pk}/{sk}".encode("utf-8", "surrogatepass")).hexdigest()


class FifoQueue:
    """An SQS FIFO queue: ``MessageGroupId`` the item's group, ``MessageDeduplicationId`` the
    job's hash (a hand-off sent twice within SQS's 5 minutes is kept once)."""

    def __init__(self, queue_url: str, *, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    def submit(self, job: Job, group: str) -> None:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=0.5, read_timeout=1.0,
                            retries={"mode": "standard", "total_max_attempts": 2})  # fmt: skip
            self._client = boto3.client("sqs", config=config)
        body = json.dumps(job, sort_keys=True)
        self._client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest(),
        )


class NotConfigured(RuntimeError):
    """No serialised path here: the busy turn goes to the deferral instead."""


class ViaDeferral:
    """Inside Lambda with no serial queue configured: threads would die with the invocation,
    so a busy turn is handed to the deferral (an async invoke, which Lambda retries), never
    dropped. Its turns race optimistically again there, without the webhook's deadline."""

    def submit(self, job: Job, group: str) -> None:
        raise NotConfigured("no serial queue configured (SESSIONS_SERIAL_QUEUE_URL)")


class GroupThreads:
    """Outside the deploy: each group's jobs in order, on a small pool (jobs live in this
    process only, as the thread deferral's do). With ``run_many``, a group's waiting jobs
    are taken up to :data:`BATCH` at a time (a group commit, ``handlers.hot``), as the SQS
    consumer receives them."""

    def __init__(
        self,
        run: Callable[[Job], None],
        *,
        run_many: Callable[[list[Job]], None] | None = None,
        workers: int = 4,
        attempts: int = 4,
    ) -> None:
        self.run = run
        self.run_many = run_many
        self.attempts = attempts
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="serial")
        self._queues: dict[str, deque[Job]] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def submit(self, job: Job, group: str) -> None:
        with self._lock:
            queue = self._queues.get(group)
            if queue is not None:  # the group's worker is running: it takes this one next
                queue.append(job)
                return
            self._queues[group] = deque([job])
        self._pool.submit(self._drain, group)

    def _drain(self, group: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[group]
                if not queue:
                    del self._queues[group]
                    self._idle.notify_all()
                    return
                take = BATCH if self.run_many is not None else 1
                jobs = [queue.popleft() for _ in range(min(take, len(queue)))]
            try:
                if self.run_many is not None and len(jobs) > 1:
                    run_with_retries(self._many, {"jobs": jobs}, attempts=self.attempts)
                else:
                    run_with_retries(self.run, jobs[0], attempts=self.attempts)
            except Exception:
                log.exception("serialised turn failed after %d attempts; dropped", self.attempts)

    def _many(self, batch: Job) -> None:
        assert self.run_many is not None
        self.run_many(batch["jobs"])

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every group is done; True when none is left."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._queues, timeout=timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def default_serialiser(
    settings: Settings,
    run: Callable[[Job], None],
    run_many: Callable[[list[Job]], None] | None = None,
) -> Serialiser:
    """The deploy's FIFO queue when configured; inside Lambda without one, the deferral
    (:class:`ViaDeferral`); outside Lambda, a thread per busy group."""
    if settings.serial_queue_url:
        return FifoQueue(settings.serial_queue_url)
    if settings.lambda_function_name:
        return ViaDeferral()
    return GroupThreads(run, run_many=run_many)


def consume(
    event: Mapping[str, Any],
    run: Callable[[Job], None],
    run_many: Callable[[list[Job]], None] | None = None,
) -> dict[str, Any]:
    """Run an SQS FIFO batch in order: every job through ``run``; the first that fails (an
    error that can heal) and every later one of its group are reported as failures, so SQS
    retries them in order (then keeps them in the dead-letter queue). A body that is not a
    job is logged and dropped: retrying cannot make it readable.

    With ``run_many``, each run of consecutive messages of one group goes to it at once (a
    group commit: ``handlers.hot``); if it fails, all of them are reported (those it had
    committed are duplicates on the retry)."""
    if run_many is not None:
        return _consume_groups(event, run_many)
    failed: list[dict[str, str]] = []
    blocked: set[str] = set()
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId"))
        group = str((record.get("attributes") or {}).get("MessageGroupId", ""))
        if group in blocked:
            failed.append({"itemIdentifier": message_id})
            continue
        try:
            job = json.loads(record.get("body") or "")
        except ValueError:
            log.error("serialised message is not JSON; dropped")
            continue
        try:
            run(job)
        except Exception:
            log.warning("serialised turn failed; SQS retries it", exc_info=True)
            blocked.add(group)
            failed.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failed}


def _consume_groups(
    event: Mapping[str, Any], run_many: Callable[[list[Job]], None]
) -> dict[str, Any]:
    runs: list[tuple[str, list[tuple[str, Job]]]] = []
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId"))
        group = str((record.get("attributes") or {}).get("MessageGroupId", ""))
        try:
            job = json.loads(record.get("body") or "")
        except ValueError:
            log.error("serialised message is not JSON; dropped")
            continue
        if runs and runs[-1][0] == group:
            runs[-1][1].append((message_id, job))
        else:
            runs.append((group, [(message_id, job)]))
    failed: list[dict[str, str]] = []
    blocked: set[str] = set()
    for group, messages in runs:
        if group not in blocked:
            try:
                run_many([job for _, job in messages])
                continue
            except Exception:
                log.warning("serialised turns failed; SQS retries them", exc_info=True)
                blocked.add(group)
        failed += [{"itemIdentifier": message_id} for message_id, _ in messages]
    return {"batchItemFailures": failed}


class Consumer:
    """The deploy's consumer of the serial queue: each job through the edge of its platform
    (built on first use, once per container)."""

    def __init__(self) -> None:
        self._edges: dict[str, Any] = {}

    def run(self, job: Job) -> None:
        platform = "messenger" if _platform(job) == "messenger" else "slack"
        self._edge(platform).run_deferred(job)

    def run_many(self, jobs: list[Job]) -> None:
        """One group's jobs, in order: its plain turns as group commits."""
        if not jobs:
            return
        platform = "messenger" if _platform(jobs[0]) == "messenger" else "slack"
        if any(("messenger" if _platform(j) == "messenger" else "slack") != platform for j in jobs):
            for job in jobs:
                self.run(job)
            return
        if len(jobs) == 1:
            self.run(jobs[0])
        else:
            self._edge(platform).run_batch(jobs)

    def _edge(self, platform: str) -> Any:
        edge = self._edges.get(platform)
        if edge is None:
            if platform == "messenger":
                from handlers import messenger as module
            else:
                from handlers import slack as module  # type: ignore[no-redef]
            edge = self._edges[platform] = module.build()
        return edge

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        if DEFERRED_KEY in event:
            # A slow effect of a serialised turn, handed off by an async invoke of this very
            # function (the edges' deferral): raise on failure so that Lambda retries it.
            self.run(event[DEFERRED_KEY])
            return {"ok": True}
        return consume(event, self.run, self.run_many)


def _platform(job: Mapping[str, Any]) -> str:
    if job.get("kind") == "sequence":
        items = job.get("items") or [{}]
        return str(items[0].get("platform", ""))
    if job.get("kind") == "effect":
        return str((job.get("origin") or {}).get("platform", ""))
    return str(job.get("platform", ""))


#: Lambda entry point of the serial queue's consumer: ``handlers/serial.handler``.
handler = Consumer()
