"""The serialised path for a busy scope: turns that kept losing their race on one item (a poll
everyone votes in at once) until the webhook's deadline, run one at a time per item.

Many writers on one item cost optimistic retries in proportion to how many race: the whole
burst, in proportion to their square, and some would pass the platform's deadline. A delivery
still busy at its deadline is handed here instead (nothing was committed: the store's event
record still decides "once"). Its *group* is the item's key, hashed: the turns of one item run
in order, one at a time, so they no longer race each other; different items run in parallel::

    webhook ─► turn lost its race until the deadline ─► submit(job, group = hash(item key))
                                                         │
          deploy: SQS FIFO queue, MessageGroupId = group ┴─► consumer Lambda (``handlers.serial``):
                  one group's messages in order; a failed one (and the rest of its group in
                  the batch) is reported back, retried, then kept in the queue's DLQ
          locally: a thread per busy group, its jobs in order

A consumer takes up to :data:`BATCH` jobs of a group at once and applies the item's plain turns
among them as one group commit (``handlers.pipeline.hot``): one read, one write. A turn on an
item its container knows is hot comes here at once, without racing first. Inside Lambda with no
queue configured, a busy turn goes to the deferral (:class:`ViaDeferral`), never dropped.

This module is the queue only: it imports boto3 (lazily, for the queue) and no platform. The
queue's Lambda consumer, which hands each job to its platform's edge, is ``handlers.serial``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from handlers.pipeline.deferral import Job, run_with_retries
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
    are taken up to :data:`BATCH` at a time, however few (a group commit,
    ``handlers.pipeline.hot``), as the SQS consumer receives them."""

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
                if self.run_many is not None:
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
