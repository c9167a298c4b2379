"""What a timer costs, on DynamoDB Local, through the real Slack edge and the todo bot: the
turn that sets a reminder (against a plain turn of the same conversation), its fire, a
scheduler's retry of that fire, the turn that cancels one (the item ticked off) and the fire
of a cancelled timer. DynamoDB requests counted with botocore's hooks, billed units by AWS's
sizing rules (``benchmarks.billing``); scheduler calls (EventBridge Scheduler's
CreateSchedule / DeleteSchedule in the deploy) counted on the scheduler."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from typing import Any

import handlers.slack
from benchmarks import installs
from benchmarks.capacity import Meter
from examples.todo import TodoBot
from handlers.pipeline.timers import next_time
from handlers.settings import from_env
from sessions import Sessions
from sessions.dynamodb import DynamoDBStore, create_table, make_client
from sessions.schedules import Schedule, SQLiteScheduler, with_occurrence
from tests import slack_requests as sr
from tests.fakes import fake_slack

USERS = 20


class Counted:
    """The scheduler, its calls counted."""

    def __init__(self) -> None:
        self.inner = SQLiteScheduler(":memory:", next_time=next_time)
        self.calls: Counter[str] = Counter()

    def create(self, schedule: Schedule) -> None:
        self.calls["CreateSchedule"] += 1
        self.inner.create(schedule)

    def delete(self, name: str) -> None:
        self.calls["DeleteSchedule"] += 1
        self.inner.delete(name)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)

    def pending(self, prefix: str = "") -> list[Schedule]:
        return self.inner.pending(prefix)


def _row(name: str, meter: Meter, scheduler: Counted, count: int) -> dict[str, Any]:
    """The DynamoDB figures (as the installs bench counts them) and the scheduler's calls."""
    row = installs.row(name, meter, count)
    row["scheduler"] = {k: round(v / count, 2) for k, v in sorted(scheduler.calls.items())}
    scheduler.calls.clear()
    return row


def run(endpoint: str) -> list[dict[str, Any]]:
    client = make_client(endpoint_url=endpoint)
    probe = make_client(endpoint_url=endpoint)
    table = f"bench-timers-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    scheduler = Counted()
    sessions = Sessions(DynamoDBStore(table, client=client), scheduler=scheduler)
    users = [f"U{n:04d}" for n in range(USERS)]
    rows = []
    with fake_slack() as fake:
        slack = handlers.slack.build(
            from_env({**os.environ, **fake.edge_env()}), sessions=sessions, bot=TodoBot()
        )

        def say(user: str, text: str) -> None:
            body = sr.dm_body(text, user=user, channel=f"D{user[1:]}")
            assert slack.handle(sr.json_event(body))["statusCode"] == 200

        def fire(schedule: Schedule) -> None:
            job = with_occurrence(schedule.payload, schedule.at)["sessions_deferred"]
            assert slack.handle({"sessions_deferred": job})["ok"]

        for user in users:  # the conversations exist: what follows is the usual turn
            say(user, "add stretch")
        with Meter(client, probe=probe) as meter:
            scheduler.calls.clear()
            for user in users:
                say(user, "add drink water")
            rows.append(_row("a plain turn (baseline)", meter, scheduler, USERS))
            for user in users:
                say(user, "remind me about 1 in 10 minutes")
            rows.append(_row("a turn that sets a timer", meter, scheduler, USERS))
            pending = scheduler.pending()
            assert len(pending) == USERS
            for schedule in pending:
                fire(schedule)
            rows.append(_row("its fire (the reminder's turn)", meter, scheduler, USERS))
            for schedule in pending:
                fire(schedule)
            rows.append(_row("the same fire again (a scheduler's retry)", meter, scheduler, USERS))
            for user in users:
                say(user, "remind me about 2 in 1 hour")
            scheduler.calls.clear()
            meter.reset()
            fired = {s.name for s in pending}
            again = [s for s in scheduler.pending() if s.name not in fired]
            assert len(again) == USERS
            for user in users:
                say(user, "done 2")
            rows.append(_row("a turn that cancels one (item ticked off)", meter, scheduler, USERS))
            for schedule in again:
                fire(schedule)
            rows.append(_row("the fire of a cancelled timer", meter, scheduler, USERS))
        reminders = [p for p in fake.posts() if p.body["text"].startswith("⏰")]
        assert len(reminders) == USERS  # each sent once
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| what | DynamoDB requests | billed RCU | billed WCU | scheduler calls |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ops = ", ".join(f"{v:g} {k}" for k, v in r["by_operation"].items()) or "none"
        calls = ", ".join(f"{v:g} {k}" for k, v in r["scheduler"].items()) or "0"
        lines.append(
            f"| {r['what']} | {r['requests']} ({ops}) | {r['rcu']} | {r['wcu']} | {calls} |"
        )
    return lines


if __name__ == "__main__":  # python -m benchmarks.timers (DynamoDB Local started for it)
    from tests import dynamodb_local

    started = time.perf_counter()
    with dynamodb_local.running() as server:
        print("\n".join(table(run(server.endpoint))))
    print(f"({time.perf_counter() - started:.1f} s)")
