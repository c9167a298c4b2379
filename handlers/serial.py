"""The serial queue's Lambda consumer: ``handlers/serial.handler`` (the queue itself, the
platform-neutral part, is ``handlers.pipeline.serial``).

Each job of an SQS FIFO batch runs through the edge of its platform, looked up by name in
``handlers.platforms`` and imported on first use (once per container), so the pipeline never
imports a platform to run a serialised turn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from handlers import platforms
from handlers.pipeline.deferral import DEFERRED_KEY, Job
from sessions.privacy import private

log = private(logging.getLogger("handlers.serial"))


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
    group commit: ``handlers.pipeline.hot``); if it fails, all of them are reported (those it
    had committed are duplicates on the retry)."""
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
        self._edge(_edge_of(job)).run_deferred(job)

    def run_many(self, jobs: list[Job]) -> None:
        """One group's jobs, in order: its plain turns as group commits (an edge's
        ``run_batch``; one by one where its edge has none)."""
        if not jobs:
            return
        platform = _edge_of(jobs[0])
        run_batch = getattr(self._edge(platform), "run_batch", None)
        if run_batch is None or any(_edge_of(j) != platform for j in jobs):
            for job in jobs:
                self.run(job)
            return
        run_batch(jobs)

    def _edge(self, platform: str) -> Any:
        edge = self._edges.get(platform)
        if edge is None:
            edge = self._edges[platform] = platforms.adapter(platform).build()
        return edge

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        if DEFERRED_KEY in event:
            # A slow effect of a serialised turn, handed off by an async invoke of this very
            # function (the edges' deferral): raise on failure so that Lambda retries it.
            self.run(event[DEFERRED_KEY])
            return {"ok": True}
        return consume(event, self.run, self.run_many)


def _edge_of(job: Mapping[str, Any]) -> str:
    """The platform whose edge runs ``job``: a job of no known platform goes to Slack's edge
    (which refuses it as a bad job); an Instagram job to Messenger's (which serves both)."""
    platform = platforms.function_of(_platform(job))
    return platform if platform in platforms.PLATFORMS else "slack"


def _platform(job: Mapping[str, Any]) -> str:
    if job.get("kind") == "sequence":
        items = job.get("items") or [{}]
        return str(items[0].get("platform", ""))
    if job.get("kind") == "effect":
        return str((job.get("origin") or {}).get("platform", ""))
    return str(job.get("platform", ""))


#: Lambda entry point of the serial queue's consumer: ``handlers/serial.handler``.
handler = Consumer()
