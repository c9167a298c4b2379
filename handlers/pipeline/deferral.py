"""Hand a slow turn off after the ack: an async invoke of our own function inside Lambda, a
thread pool outside it (local server, tests).

The job carries the already verified and parsed event, never the raw request, so running it
late cannot fail Slack's 300 s signature window (Bolt's lazy listener runner re-verifies the
raw request and so cannot do this). A job that fails retries itself with jittered backoff;
inside Lambda the async invocation's own retries and the function's failure destination
(serverless.yml) then keep it, so it is never dropped silently::

    request ──► verify, parse ──► ack 200 (< 3 s) ─┐
                                  submit(job) ─────┴─► invoke(InvocationType=Event)
                                                         └─► handler({"sessions_deferred": job})
                                                              turn, commit, send; retried on
                                                              error, then failure destination

This is the one ``handlers`` module that imports boto3 (lazily, on the first hand-off).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from handlers.settings import Settings

from sessions.privacy import private

log = private(logging.getLogger("handlers.deferral"))

#: Top-level key of a deferred job's Lambda payload. API Gateway events never carry it: an
#: HTTP body arrives under ``body``; only a direct invoke (our own role) can set it.
DEFERRED_KEY = "sessions_deferred"

Job = dict[str, Any]


class Deferrer(Protocol):
    def submit(self, job: Job) -> None:
        """Hand the job off; raise if it could not be handed off (nothing was started)."""
        ...


def run_with_retries(
    run: Callable[[Job], None],
    job: Job,
    *,
    attempts: int = 4,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run ``job``, retrying failures with full-jitter backoff; re-raise the last failure."""
    for attempt in range(1, attempts + 1):
        try:
            run(job)
            return
        except Exception:
            if attempt == attempts:
                raise
            log.warning("deferred turn failed, retrying", exc_info=True, extra={"attempt": attempt})
            sleep(random.random() * min(max_backoff, backoff * 2**attempt))


def make_lambda_client(**overrides: Any) -> Any:
    """A Lambda client sized for the ack path: an async invoke answers 202 in milliseconds,
    so 0.5 s to connect, 1 s to answer and no retry keep a failing hand-off (answered 5xx or
    with an apology) well inside Slack's 3 s."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=0.5,
        read_timeout=1.0,
        retries={"mode": "standard", "total_max_attempts": 1},
        tcp_keepalive=True,
    )
    return boto3.client("lambda", config=config, **overrides)


class LambdaDeferrer:
    """Async-invokes our own function (``InvocationType=Event``) with the job."""

    def __init__(self, function_name: str, *, client: Any = None) -> None:
        self.function_name = function_name
        self._client = client

    def submit(self, job: Job) -> None:
        if self._client is None:
            self._client = make_lambda_client()
        self._client.invoke(
            FunctionName=self.function_name,
            InvocationType="Event",
            Payload=json.dumps({DEFERRED_KEY: job}).encode(),
        )


class ThreadDeferrer:
    """Runs jobs on a small thread pool, each retried with backoff (outside Lambda).

    Jobs live in this process only: a job still pending when the process exits is lost (its
    event was acked). That is the local server's trade-off; inside Lambda use
    :class:`LambdaDeferrer`, whose jobs Lambda keeps.
    """

    def __init__(
        self,
        run: Callable[[Job], None],
        *,
        workers: int = 4,
        attempts: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.run = run
        self.attempts = attempts
        self.backoff = backoff
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deferred")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        future = self._pool.submit(self._run, job)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run(self, job: Job) -> None:
        try:
            run_with_retries(self.run, job, attempts=self.attempts, backoff=self.backoff)
        except Exception:
            log.exception("deferred turn failed after %d attempts; job dropped", self.attempts)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for every submitted job; True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            wait(pending, timeout=left)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def default_deferrer(settings: Settings, run: Callable[[Job], None]) -> Deferrer:
    """Inside Lambda, an async invoke of our own function; outside it, a thread pool."""
    if settings.lambda_function_name:
        return LambdaDeferrer(settings.lambda_function_name)
    return ThreadDeferrer(run)
