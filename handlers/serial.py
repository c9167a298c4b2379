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


class GroupThreads:
    """Outside the deploy: each group's jobs in order, one at a time, on a small pool (jobs
    live in this process only, as the thread deferral's do)."""

    def __init__(self, run: Callable[[Job], None], *, workers: int = 4, attempts: int = 4) -> None:
        self.run = run
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
                job = queue.popleft()
            try:
                run_with_retries(self.run, job, attempts=self.attempts)
            except Exception:
                log.exception("serialised turn failed after %d attempts; dropped", self.attempts)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every group is done; True when none is left."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._queues, timeout=timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def default_serialiser(settings: Settings, run: Callable[[Job], None]) -> Serialiser:
    """The deploy's FIFO queue when configured, else a thread per busy group."""
    if settings.serial_queue_url:
        return FifoQueue(settings.serial_queue_url)
    return GroupThreads(run)


def consume(event: Mapping[str, Any], run: Callable[[Job], None]) -> dict[str, Any]:
    """Run an SQS FIFO batch in order: every job through ``run``; the first that fails (an
    error that can heal) and every later one of its group are reported as failures, so SQS
    retries them in order (then keeps them in the dead-letter queue). A body that is not a
    job is logged and dropped: retrying cannot make it readable."""
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


class Consumer:
    """The deploy's consumer of the serial queue: each job through the edge of its platform
    (built on first use, once per container)."""

    def __init__(self) -> None:
        self._edges: dict[str, Any] = {}

    def run(self, job: Job) -> None:
        # An Instagram job runs in the Messenger edge (which serves both).
        named = _platform(job)
        platform = {"instagram": "messenger"}.get(named, named)
        edge = self._edges.get(platform)
        if edge is None:
            if platform == "messenger":
                from handlers import messenger as module
            elif platform == "whatsapp":
                from handlers import whatsapp as module  # type: ignore[no-redef]
            else:
                from handlers import slack as module  # type: ignore[no-redef]
            edge = self._edges[platform] = module.build()
        edge.run_deferred(job)

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        if DEFERRED_KEY in event:
            # A slow effect of a serialised turn, handed off by an async invoke of this very
            # function (the edges' deferral): raise on failure so that Lambda retries it.
            self.run(event[DEFERRED_KEY])
            return {"ok": True}
        return consume(event, self.run)


def _platform(job: Mapping[str, Any]) -> str:
    if job.get("kind") == "sequence":
        items = job.get("items") or [{}]
        return str(items[0].get("platform", ""))
    if job.get("kind") == "effect":
        return str((job.get("origin") or {}).get("platform", ""))
    return str(job.get("platform", ""))


#: Lambda entry point of the serial queue's consumer: ``handlers/serial.handler``.
handler = Consumer()
