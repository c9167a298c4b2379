"""What the whole-product model (``tests/property/test_product_model.py``) found beyond the
issue's list, each as a named test through the real Slack edge and the admin CLI, with really
signed requests, on SQLite and on DynamoDB Local.

A Slack event's time is in whole seconds (a slash command's is its signed request's
timestamp), and an event at or before a user delete may have happened before it, so it is
taken for a late one. A user deleted while they had written to no channel, who then ran a
command in a channel within the same second, had their membership mark refused (the
tombstone says the event is older than the delete) while the channel's turn ran anyway (the
channel never forgot them: they were not a member). A second delete then could not find the
channel: their text stayed in its shared state, and a slow effect of that turn still answered
in their name after the delete. A turn whose mark the tombstone refuses is now ignored on the
channel too.
"""

from __future__ import annotations

import io
import time
from typing import Any

import pytest

import handlers.slack
from handlers.settings import from_env
from handlers.tools import admin
from sessions import ConversationKey, Sessions
from sessions.keys import partition_from_pk
from sessions.store import Tombstone
from tests.bots import model
from tests.fakes import QueueDeferrer
from tests.functional.conftest import SlackWorld
from tests.slack_requests import form, http_v2

TEAM, CHANNEL, USER = "T0001", "C0001", "U0001"
CANARY = "P!canary-of-u0001"


def command(text: str, *, timestamp: int, response_url: str) -> dict[str, Any]:
    """``/model <text>`` in the channel, signed at ``timestamp`` (a whole second)."""
    body, headers = form(
        {
            "team_id": TEAM,
            "channel_id": CHANNEL,
            "user_id": USER,
            "command": "/model",
            "text": text,
            "response_url": response_url,
            "trigger_id": f"{time.time_ns() % 10**12}.a1b2c3",
        },
        timestamp=timestamp,
    )
    return http_v2(body, headers)


def delete_user() -> None:
    """``make admin ARGS="delete slack#T0001#U0001 --yes"``, as the operator runs it."""
    argv = ["delete", f"slack#{TEAM}#{USER}", "--yes", "--settle", "0"]
    assert admin.main(argv, stdin=io.StringIO()) == 0


def tombstone_ms(slack: SlackWorld) -> int:
    items = slack.store.user_items(partition_from_pk(f"slack#{TEAM}#{USER}"))
    stones = [item for _, item in items if isinstance(item, Tombstone)]
    assert stones, "the delete left a tombstone"
    return stones[0].generation


@pytest.fixture
def edge(
    slack: SlackWorld, monkeypatch: pytest.MonkeyPatch
) -> tuple[handlers.slack.SlackEdge, QueueDeferrer]:
    monkeypatch.setenv("BOT", "tests.bots.model:channel")  # the operator's admin CLI's bot
    jobs = QueueDeferrer()
    built = handlers.slack.build(from_env(), bot=model.channel, deferrer=jobs)
    return built, jobs


def channel_state(slack: SlackWorld) -> Any:
    key = ConversationKey.slack(team=TEAM, channel=CHANNEL, user=USER).scoped("channel", "mchannel")
    found = Sessions(slack.store).get(key)
    return None if found is None else found.state


def test_a_command_in_the_second_of_a_delete_is_found_by_the_next_delete(
    slack: SlackWorld, edge: tuple[handlers.slack.SlackEdge, QueueDeferrer]
) -> None:
    slack_edge, _ = edge
    delete_user()
    second = tombstone_ms(slack) // 1000  # the delete's own second
    answer = slack_edge.handle(
        command(f"e1 note channel {CANARY}", timestamp=second,
                response_url=slack.fake.response_url("r1"))
    )  # fmt: skip
    assert answer["statusCode"] == 200
    delete_user()
    assert CANARY not in repr(channel_state(slack))


def test_a_slow_effect_of_a_command_in_the_second_of_a_delete_answers_no_deleted_user(
    slack: SlackWorld, edge: tuple[handlers.slack.SlackEdge, QueueDeferrer]
) -> None:
    slack_edge, jobs = edge
    delete_user()
    second = tombstone_ms(slack) // 1000
    slack_edge.handle(
        command(f"e1 slowfx {CANARY}", timestamp=second,
                response_url=slack.fake.response_url("r1"))
    )  # fmt: skip
    delete_user()
    before = len(slack.fake.calls)
    jobs.drain(slack_edge.run_deferred)
    sent = [c.body for c in slack.fake.calls[before:]]
    assert not [body for body in sent if CANARY in repr(body)]


@pytest.mark.parametrize("offset", [-240, -1, 0, 1, 240])
def test_a_command_around_a_delete_is_ignored_or_found_by_the_next_delete(
    slack: SlackWorld, edge: tuple[handlers.slack.SlackEdge, QueueDeferrer], offset: int
) -> None:
    """Slack's whole seconds, with its clock minutes behind or ahead of ours: a command at or
    before the delete's second (as Slack's clock says) is ignored on the channel as in the
    user's partition; a later one runs and marks the user, so the next delete reaches it."""
    slack_edge, _ = edge
    delete_user()
    second = tombstone_ms(slack) // 1000 + offset
    answer = slack_edge.handle(
        command(f"e1 note channel {CANARY}", timestamp=second,
                response_url=slack.fake.response_url("r1"))
    )  # fmt: skip
    assert answer["statusCode"] == 200
    assert (CANARY in repr(channel_state(slack))) == (offset > 0)
    delete_user()
    assert CANARY not in repr(channel_state(slack))
