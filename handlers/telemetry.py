"""Structured logs and CloudWatch metrics for the Lambda functions, through Powertools for AWS
Lambda (its ``Logger`` and ``EphemeralMetrics``): one JSON log line per delivery, and one
embedded-metric-format (EMF) blob per invocation that CloudWatch turns into metrics without
an API call.

The turn line carries what an operator needs to follow a delivery, and nothing a user said:
the platform, a hash of the conversation's key (not the user's id), a hash of the event's id,
the outcome, attempts, time in the store and in the whole turn, whether the replies went out,
the error's class (never its message: a bot's exception may quote the user), and the Lambda
request id it belongs to. Every other log line of ``sessions`` and ``handlers`` becomes a
JSON line too, its ``extra=`` fields kept. Secrets are never passed to a logger.

On by default inside Lambda, off elsewhere (the local server logs for people);
``SESSIONS_TELEMETRY=on|off`` overrides (read with the other settings). The metrics' namespace is
``POWERTOOLS_METRICS_NAMESPACE`` (default ``ChatSessions``), the service
``POWERTOOLS_SERVICE_NAME`` (default ``chat-sessions``); the dimensions are service and
platform.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import IO, Any, cast

from sessions import TurnReport
from sessions.privacy import conversation_hash, fingerprint

NAMESPACE = "ChatSessions"
SERVICE = "chat-sessions"

#: Metric per outcome (a count of 1 per delivery with that outcome).
OUTCOME_METRICS = {
    "applied": "Turns",
    "duplicate": "Duplicates",
    "ignored": "Ignored",
    "dead_lettered": "DeadLetters",
    "busy": "Busy",
    "error": "StoreErrors",
}


class _Stdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


class Telemetry:
    """The functions' logger and metrics. Thread-safe: a Messenger batch runs senders on a
    few threads, and their reports land here together."""

    def __init__(self, *, stream: IO[str] | None = None) -> None:
        from aws_lambda_powertools import Logger
        from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

        service = os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE
        self.namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE
        self.service = service
        # One logger per service name lives for the process; it writes to whatever stdout is
        # when a line is written (the same in Lambda; a test's capture when it runs there).
        self.logger = Logger(service=service, stream=stream or cast("IO[str]", _Stdout()), utc=True)
        # Our other loggers (and their extra= fields) as JSON lines through the same handler.
        copy_config_to_registered_loggers(
            source_logger=self.logger, include={"sessions", "handlers"}
        )
        self._lock = threading.Lock()
        self._metrics: dict[str, Any] = {}  # platform -> EphemeralMetrics
        self._cold = True

    def begin(self, context: Any) -> None:
        """At the start of an invocation: correlate every line with its request id."""
        request_id = getattr(context, "aws_request_id", None)
        self.logger.append_keys(function_request_id=request_id, cold_start=self._cold)
        self._cold = False

    def end(self) -> None:
        """At the end of an invocation: write the metrics (one EMF blob per platform)."""
        with self._lock:
            metrics, self._metrics = self._metrics, {}
        for m in metrics.values():
            m.flush_metrics()
        self.logger.remove_keys(["function_request_id", "cold_start"])

    def __call__(self, report: TurnReport) -> None:
        """The session runner's observer: one log line, and the turn's metrics."""
        key = report.key
        self.logger.info(
            "turn",
            extra={
                "platform": key.platform,
                "conversation": conversation_hash(key.pk, key.sk),
                # The event's id is the platform's but a client may choose it (a Messenger
                # mid): its kind and a hash, to find it again in the platform's own logs.
                "event_kind": report.idempotency_key.split(":", 1)[0],
                "event_hash": fingerprint(report.idempotency_key),
                "outcome": report.outcome,
                "replayed": report.replayed,
                "attempts": report.attempts,
                "retries": report.attempts - 1,
                "turn_ms": report.turn_ms,
                "store_ms": report.store_ms,
                "store_calls": report.store_calls,
                "key_requests": report.key_requests,
                "large_reads": report.large_reads,
                "large_writes": report.large_writes,
                "read_units": report.read_units,
                "write_units": report.write_units,
                "sent": report.sent,
                "send_error": report.send_error,
                "error": report.error.split(":", 1)[0] if report.error else None,
            },
        )
        from aws_lambda_powertools.metrics import MetricUnit

        count, ms = MetricUnit.Count, MetricUnit.Milliseconds
        with self._lock:
            m = self._for(key.platform)
            m.add_metric(name=OUTCOME_METRICS.get(report.outcome, "Other"), unit=count, value=1)
            if report.replayed:
                m.add_metric(name="Replays", unit=count, value=1)
            if report.attempts > 1:
                m.add_metric(name="Retries", unit=count, value=report.attempts - 1)
            if report.send_error:
                m.add_metric(name="SendFailures", unit=count, value=1)
            if report.key_requests:
                m.add_metric(name="KeyRequests", unit=count, value=report.key_requests)
            if report.large_reads:
                m.add_metric(name="LargeStateReads", unit=count, value=report.large_reads)
            if report.large_writes:
                m.add_metric(name="LargeStateWrites", unit=count, value=report.large_writes)
            if report.read_units is not None and report.write_units is not None:
                m.add_metric(name="ReadUnits", unit=count, value=report.read_units)
                m.add_metric(name="WriteUnits", unit=count, value=report.write_units)
            m.add_metric(name="TurnLatency", unit=ms, value=report.turn_ms)
            m.add_metric(name="StoreLatency", unit=ms, value=report.store_ms)

    def _for(self, platform: str) -> Any:
        m = self._metrics.get(platform)
        if m is None:
            from aws_lambda_powertools.metrics import EphemeralMetrics

            m = EphemeralMetrics(namespace=self.namespace, service=self.service)
            m.add_dimension(name="platform", value=platform)
            self._metrics[platform] = m
        return m


__all__ = ["Telemetry", "conversation_hash"]
