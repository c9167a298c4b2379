"""Token rotation never on the ack path, through the real Slack edge over SQLite and DynamoDB
Local: a token inside its refresh window is still used and its refresh is handed off; only
an expired token makes its turn wait, deferred; a one-time timer set at install refreshes it
ahead of expiry; one refresh per rotation whoever asks."""

from __future__ import annotations

import time
from typing import Any

import pytest

import handlers.slack
from examples.todo import TodoBot
from handlers.pipeline.timers import TimerLoop
from handlers.settings import from_env
from handlers.slack.installs import TableInstallationStore
from handlers.slack.oauth import ROTATE_BEFORE
from sessions import Sessions
from sessions.schedules import SQLiteScheduler
from sessions.store import Store
from tests.fakes import FakeSlack
from tests.functional.test_install import install_link, redirect
from tests.functional.test_uninstall import say
from tests.functional.test_uninstall import world as world


class Held:
    """A deferral that keeps what it is handed, run when the test says (the ack's side of
    the hand-off only)."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def submit(self, job: Any) -> None:
        self.jobs.append(job)


def edge_with(store: Store, scheduler: SQLiteScheduler, held: Held) -> handlers.slack.SlackEdge:
    return handlers.slack.build(
        from_env(), sessions=Sessions(store, scheduler=scheduler), bot=TodoBot(), deferrer=held
    )


def refreshes(fake: FakeSlack) -> int:
    return len([c for c in fake.calls if c.body.get("grant_type") == "refresh_token"])


def installed(edge: handlers.slack.SlackEdge) -> None:
    link = install_link(edge)
    assert edge.handle(redirect(link, "code-T0007-rot"))["statusCode"] == 200


def test_a_token_inside_its_window_is_used_and_refreshed_off_the_ack(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    fake, store, scheduler = world
    held = Held()
    edge = edge_with(store, scheduler, held)
    installed(edge)  # the token expires in 10 minutes: inside the 2 h window
    assert say(edge, "add milk", team="T0007") == 200
    assert refreshes(fake) == 0  # nothing on the ack path
    assert fake.posts()[-1].headers.get("Authorization") == "Bearer xoxe.xoxb-first"
    rotations = [j for j in held.jobs if j.get("kind") == "rotate"]
    assert rotations == [{"kind": "rotate", "enterprise": None, "team": "T0007"}]
    assert say(edge, "add tea", team="T0007") == 200  # asked once per container
    assert len([j for j in held.jobs if j.get("kind") == "rotate"]) == 1
    edge.run_deferred(rotations[0])  # the deferred refresh
    edge.run_deferred(rotations[0])  # a second run finds it fresh: no second refresh
    assert refreshes(fake) == 1
    bot = TableInstallationStore(Sessions(store).installations).find_bot(
        enterprise_id=None, team_id="T0007"
    )
    assert bot is not None and bot.bot_token == "xoxe.xoxb-rotated-1"


def test_only_an_expired_token_waits_and_then_off_the_ack(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    fake, store, scheduler = world
    held = Held()
    edge = edge_with(store, scheduler, held)
    installed(edge)
    installs = TableInstallationStore(Sessions(store).installations)
    bot = installs.find_bot(enterprise_id=None, team_id="T0007")
    assert bot is not None
    bot.bot_token_expires_at = int(time.time()) - 5  # expired
    installs.save_bot(bot)
    fresh = edge_with(store, scheduler, held)  # a container that never saw it
    assert say(fresh, "add milk", team="T0007") == 200
    assert refreshes(fake) == 0 and fake.posts() == []  # acked: nothing waited inline
    turns = [j for j in held.jobs if j.get("kind") == "event"]
    assert len(turns) == 1  # the turn, deferred
    fresh.run_deferred(turns[0])  # its token is refreshed first, then the turn runs
    assert refreshes(fake) == 1
    assert fake.posts()[-1].headers.get("Authorization") == "Bearer xoxe.xoxb-rotated-1"


def test_a_timer_set_at_install_refreshes_ahead_of_expiry(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    fake, store, scheduler = world
    held = Held()
    edge = edge_with(store, scheduler, held)
    installed(edge)
    timers = [s for s in scheduler.pending() if ".rotate." in s.name]
    assert len(timers) == 1
    expires = int(timers[0].name.rsplit(".", 1)[1])
    assert timers[0].at == pytest.approx(max(time.time(), expires - ROTATE_BEFORE), abs=5)
    loop = TimerLoop(scheduler, lambda _target, payload: edge.handle(payload))
    assert loop.fire_due(time.time() + 1) == 1
    assert refreshes(fake) == 1
    # The next one is set from the new expiry (12 h): 10 h from now.
    again = [s for s in scheduler.pending() if ".rotate." in s.name]
    assert len(again) == 1 and again[0].at > time.time() + 9 * 3600
    assert say(edge, "add milk", team="T0007") == 200
    assert fake.posts()[-1].headers.get("Authorization") == "Bearer xoxe.xoxb-rotated-1"
    assert [j for j in held.jobs if j.get("kind") == "rotate"] == []
