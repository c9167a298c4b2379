"""A private exchange's later answers stay private (issue 33, case 3): the route of a timer
set by a slash command or a button in a channel is ephemeral, survives the deferral's and the
scheduler's JSON, and is kept by an effect's follow-up; in a DM or after a public message,
it is not."""

from __future__ import annotations

import pytest

from bot import Message
from bot.base import Effect
from handlers.pipeline.delivery import Delivery, SlackKind, SlackRoute, dump, load, private_exchange
from handlers.pipeline.timers import template
from sessions import ConversationKey


def origin(kind: SlackKind, channel: str) -> Delivery:
    key = ConversationKey.slack(team="T0001", channel=channel, user="U0001")
    message = Message(kind="command", text="remind", platform="slack", workspace="T0001",
                      conversation=channel, user="U0001", time=1_796_000_000.25)  # fmt: skip
    return Delivery(key, "Ev1", message, 1_796_000_000.25, SlackRoute(kind, "https://x/r"))


ENTRY = {"name": "remind-1", "id": "fx-1", "due": 1_796_000_600.25}


@pytest.mark.parametrize(
    ("kind", "channel", "ephemeral"),
    [
        ("command", "C0001", True),
        ("action", "G0001", True),
        ("submission", "C0001", True),
        ("event", "C0001", False),  # a public message: its timer answers in public
        ("command", "D0001", False),  # a DM is the user's alone already
    ],
)
def test_a_timer_keeps_the_visibility_of_the_exchange_that_set_it(
    kind: SlackKind, channel: str, ephemeral: bool
) -> None:
    fire = template(origin(kind, channel), ENTRY)
    assert isinstance(fire.route, SlackRoute)
    assert fire.route.kind == "event" and fire.route.ephemeral is ephemeral
    again = load(dump(fire))
    assert isinstance(again, Delivery) and again.route == fire.route
    assert private_exchange(again.route, again.key) is ephemeral
    follow = again.effect(0, Effect("lookup", {})).follow_up(Message(kind="effect"))
    assert follow.route == fire.route
    assert ("ephemeral" in dump(fire)) is ephemeral  # the format only grows when it is set
