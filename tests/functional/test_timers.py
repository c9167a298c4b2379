"""Timers through the real edges: a user asks the todo bot for a reminder over a signed Slack
DM or Messenger message; the schedule waits in the local scheduler (SQLite, as ``make run``
keeps it); at its time the scheduler hands our function its payload (the Lambda entry, as
EventBridge Scheduler invokes it) and the reminder is sent once, however often it is handed
over. On SQLite and DynamoDB Local."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

import handlers.messenger
import handlers.slack
from handlers.pipeline.timers import TimerLoop, next_time
from sessions import ConversationKey, UserKey
from sessions.schedules import SQLiteScheduler
from tests import messenger_requests as mr
from tests.functional.conftest import MessengerWorld, SlackWorld
from tests.slack_requests import dm_body, json_event


@pytest.fixture
def scheduler() -> Iterator[SQLiteScheduler]:
    """The scheduler the edges wrote to (``SESSIONS_TIMERS_DB``), read by a test's own
    connection, as a restarted server would."""
    scheduler = SQLiteScheduler(os.environ["SESSIONS_TIMERS_DB"], next_time=next_time)
    yield scheduler
    scheduler.close()


def loop(scheduler: SQLiteScheduler, handler: Any) -> TimerLoop:
    return TimerLoop(scheduler, lambda target, payload: handler(payload, None))


def test_a_slack_reminder_is_sent_once_at_its_time(
    slack: SlackWorld, scheduler: SQLiteScheduler
) -> None:
    for text in ("add water the plants", "remind me about 1 in 10 minutes"):
        assert slack.call(json_event(dm_body(text)))["statusCode"] == 200
    answer = slack.fake.posts()[-1].body["text"]
    assert "remind you about “water the plants” in 10 minutes" in answer
    (pending,) = scheduler.pending()
    assert pending.at == pytest.approx(time.time() + 600, abs=5)
    assert pending.target == "slack"
    timers = loop(scheduler, handlers.slack.handler)
    assert timers.fire_due(time.time()) == 0  # not yet
    posts = len(slack.fake.posts())
    assert timers.fire_due(pending.at) == 1
    reminder = slack.fake.posts()[posts:]
    assert [p.body["text"] for p in reminder] == ["⏰ Reminder: “water the plants”"]
    assert reminder[0].body["channel"] == "D0001"
    # Handed over again (a scheduler's retry): nothing more.
    handlers.slack.handler(
        {"sessions_deferred": {**pending.payload["sessions_deferred"], "occurrence": pending.at}},
        None,
    )
    assert len(slack.fake.posts()) == posts + 1
    assert scheduler.pending() == []


def test_a_messenger_reminder_is_cancelled_by_ticking_the_item_off(
    messenger: MessengerWorld, scheduler: SQLiteScheduler
) -> None:
    for text in ("add call mum", "remind me about 1 in 1 hour"):
        assert messenger.call(mr.post(mr.single(mr.text(text))))["statusCode"] == 200
    (pending,) = scheduler.pending()
    assert pending.target == "messenger"
    payload = pending.payload
    assert messenger.call(mr.post(mr.single(mr.text("done 1"))))["statusCode"] == 200
    assert scheduler.pending() == []
    sent = len(messenger.texts())
    # A fire already on its way when it was cancelled: no turn, nothing sent or written.
    key = ConversationKey.messenger(page=mr.PAGE, psid=mr.USER).scoped("conversation", "todo")
    version = messenger.sessions.get(key).version  # type: ignore[union-attr]
    handlers.messenger.handler(
        {"sessions_deferred": {**payload["sessions_deferred"], "occurrence": pending.at}}, None
    )
    assert len(messenger.texts()) == sent
    assert messenger.sessions.get(key).version == version  # type: ignore[union-attr]


def test_a_messenger_reminder_is_sent_to_its_user(
    messenger: MessengerWorld, scheduler: SQLiteScheduler
) -> None:
    for text in ("add call mum", "remind me about 1 in 90 seconds"):
        messenger.call(mr.post(mr.single(mr.text(text))))
    (pending,) = scheduler.pending()
    assert loop(scheduler, handlers.messenger.handler).fire_due(pending.at + 1) == 1
    assert messenger.texts()[-1] == "⏰ Reminder: “call mum”"
    assert messenger.fake.sends()[-1].body["recipient"]["id"] == mr.USER


def test_deleting_the_user_cancels_their_reminders(
    slack: SlackWorld, scheduler: SQLiteScheduler
) -> None:
    for text in ("add a", "remind me about 1 in 5 minutes"):
        slack.call(json_event(dm_body(text)))
    assert len(scheduler.pending()) == 1
    handlers.slack.handler.reset()
    from handlers.entry import build_edge
    from handlers.slack import SlackEdge

    edge = build_edge(SlackEdge, None)
    edge.sessions.delete_user(UserKey("slack", "T0001", "U0001"))
    assert scheduler.pending() == []


def test_a_forget_turn_keeps_a_channel_with_pending_timers_alive(tmp_path: Any) -> None:
    """A user delete's forget turn on a channel (the standup's) writes the channel's state
    again: it keeps the channel's schedule's state past the idle TTL, as every turn does."""
    from bot import Message
    from bot.spec import BotSpec
    from examples.standup import bot as standup
    from handlers.pipeline import Pipeline, bot_turn
    from handlers.pipeline.delivery import Delivery, SlackRoute
    from handlers.pipeline.membership import Membership
    from sessions import Sessions
    from sessions.sqlite import SQLiteStore
    from tests.contract.test_timers import Recorder

    sessions = Sessions(
        SQLiteStore(tmp_path / "s.sqlite3"),
        scheduler=SQLiteScheduler(":memory:", next_time=next_time),
        idle_ttl=60,
    )
    spec = BotSpec.of(standup)
    pipeline = Pipeline(sessions=sessions, spec=spec, platform=Recorder(),
                        deferrer=lambda: None)  # type: ignore[arg-type,return-value]  # fmt: skip
    # U0002 set the channel's daily round; U0001 (deleted below) wrote to it too. (A timer
    # U0001 set would go with them: it would fire in their name.)
    setter = ConversationKey.slack(team="T0001", channel="C0001", user="U0002")
    key = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
    now = time.time()
    message = Message(kind="command", command="/standup", text="daily 09:30 Europe/Berlin",
                      platform="slack", workspace="T0001", conversation="C0001", user="U0002",
                      time=now)  # fmt: skip
    pipeline.run(Delivery(setter, "Ev1", message, now, SlackRoute("command")))
    opened = dataclasses.replace(message, text="", user="U0001")
    pipeline.run(Delivery(key, "Ev2", opened, now, SlackRoute("command")))
    channel = key.scoped("channel", "standup")
    stored_channel = sessions.get(channel)
    assert stored_channel is not None
    due = stored_channel.state["__timers__"]["standup:daily"]["due"]
    assert stored_channel.expires_at >= due
    assert stored_channel.expires_at >= due
    done, failed = Membership(sessions, spec).forget(
        UserKey("slack", "T0001", "U0001"), turn=bot_turn(spec)
    )
    assert (done, failed) == (1, 0)
    after = sessions.get(channel)
    assert after is not None and after.version == stored_channel.version + 1
    assert after.expires_at >= due
    assert "standup:daily" in after.state["__timers__"]
