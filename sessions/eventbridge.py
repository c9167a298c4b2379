"""Timers in the deploy: EventBridge Scheduler (a :class:`~sessions.schedules.Scheduler`).

Each timer is one schedule in the stage's schedule group, named by
``sessions.schedules.schedule_name`` (hashes only):

- a one-time timer: ``at(<UTC time>)``, deleted by the scheduler once it ran
  (``ActionAfterCompletion: DELETE``); a time less than a minute ahead is scheduled a
  minute ahead (the scheduler's resolution is the minute);
- a recurring one: ``cron(...)`` in its time zone (``ScheduleExpressionTimezone``), until
  cancelled.

The target is the function of the timer's platform (a Slack conversation's timer fires in
the Slack function), invoked by the schedules' role (which may only invoke those functions)
with the schedule's payload, the scheduler's retry policy, and a dead-letter queue for what
never got through.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from sessions.aws import call, make_client
from sessions.errors import SessionError, StoreError, StoreUnavailableError
from sessions.schedules import Schedule

#: How long the scheduler keeps trying to hand a fire over, and how often (then the DLQ).
MAX_EVENT_AGE = 3600
MAX_RETRIES = 20
#: The scheduler's resolution: an ``at()`` sooner than this is moved to it.
LEAD = 60


def _classify(code: str) -> SessionError | None:
    if code in ("ValidationException", "AccessDeniedException"):
        return StoreError(f"EventBridge Scheduler refused the request: {code}")
    return None  # throttled, internal, conflict (handled by the caller): may heal


class EventBridgeScheduler:
    """Schedules in one schedule group. ``targets``: the function ARN each
    :attr:`Schedule.target` fires; ``cron_expression(cron, tz)``: a five-field cron as the
    scheduler's ``cron(...)`` (the bot API's rule, passed in)."""

    def __init__(
        self,
        group: str,
        *,
        targets: Mapping[str, str],
        role_arn: str,
        dead_letter_arn: str | None = None,
        cron_expression: Callable[[str, str], str] | None = None,
        client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.group = group
        self.cron_expression = cron_expression
        self.targets = dict(targets)
        self.role_arn = role_arn
        self.dead_letter_arn = dead_letter_arn
        self._client = client
        self.clock = clock

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client("scheduler", read_timeout=5)
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return call(
            self.client, operation, service="EventBridge Scheduler", classify=_classify, **kwargs
        )

    def create(self, schedule: Schedule) -> None:
        arn = self.targets.get(schedule.target)
        if arn is None:
            raise StoreError(f"no function fires {schedule.target!r} timers (its target ARN)")
        target: dict[str, Any] = {
            "Arn": arn,
            "RoleArn": self.role_arn,
            "Input": json.dumps(dict(schedule.payload), separators=(",", ":")),
            "RetryPolicy": {
                "MaximumEventAgeInSeconds": MAX_EVENT_AGE,
                "MaximumRetryAttempts": MAX_RETRIES,
            },
        }
        if self.dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": self.dead_letter_arn}
        if schedule.cron is not None:
            if self.cron_expression is None:
                raise StoreError("a recurring timer needs the scheduler's cron_expression")
            expression = self.cron_expression(schedule.cron, schedule.tz)
            zone, after = schedule.tz, "NONE"
        else:
            at = max(schedule.at, self.clock() + LEAD)
            moment = dt.datetime.fromtimestamp(int(-(-at // 1)), dt.UTC)
            expression, zone, after = f"at({moment:%Y-%m-%dT%H:%M:%S})", "UTC", "DELETE"
        try:
            self.client.create_schedule(
                Name=schedule.name,
                GroupName=self.group,
                ScheduleExpression=expression,
                ScheduleExpressionTimezone=zone,
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion=after,
                State="ENABLED",
                Target=target,
            )
        except Exception as exc:
            if _code(exc) == "ConflictException":
                return  # created already (a retry): the same name is the same timer
            self._raise(exc, "CreateSchedule")

    def delete(self, name: str) -> None:
        try:
            self.client.delete_schedule(Name=name, GroupName=self.group)
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException":
                return  # fired and deleted itself, or deleted before
            self._raise(exc, "DeleteSchedule")

    def _raise(self, exc: Exception, operation: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = _code(exc)
            error = _classify(code)
            if error is None:
                error = StoreUnavailableError(f"EventBridge Scheduler {operation}: {code}")
            raise error from exc
        if isinstance(exc, BotoCoreError):
            raise StoreUnavailableError(f"EventBridge Scheduler {operation} failed") from exc
        raise exc

    def pending(self, prefix: str = "") -> list[Schedule]:
        found = []
        token = None
        while True:
            page = self._call(
                "list_schedules",
                GroupName=self.group,
                **({"NamePrefix": prefix} if prefix else {}),
                **({"NextToken": token} if token else {}),
            )
            for item in page.get("Schedules") or []:
                found.append(Schedule(name=item["Name"], at=0.0))
            token = page.get("NextToken")
            if not token:
                return found

    def delete_prefix(self, prefix: str) -> int:
        names = [s.name for s in self.pending(prefix)]
        for name in names:
            self.delete(name)
        return len(names)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


__all__ = ["EventBridgeScheduler"]
