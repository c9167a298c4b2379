"""A new platform is a folder and its lines in ``handlers.platforms``: the session core takes its
keys once registered, the pipeline's jobs and timers find the function that serves it, and
nothing else names it."""

from __future__ import annotations

import re

import pytest

from bot import Message
from handlers import platforms
from handlers.pipeline.delivery import Delivery, MessengerRoute, dump, load
from handlers.pipeline.timers import target_of
from handlers.settings import from_env
from sessions.errors import InvalidKeyError
from sessions.keys import ConversationKey, UserKey, register_platform


def test_a_platform_the_core_does_not_know_is_refused_until_registered() -> None:
    with pytest.raises(InvalidKeyError):
        ConversationKey("zeta", "acct.1", "acct.1", "US.abc")
    register_platform("zeta", re.compile(r"[A-Za-z0-9._-]{1,64}"))
    register_platform("zeta", re.compile(r"[A-Za-z0-9._-]{1,64}"))  # again: harmless
    key = ConversationKey("zeta", "acct.1", "acct.1", "US.abc")
    assert key.pk == "zeta#acct.1#US.abc"
    assert UserKey.from_pk(key.pk) == UserKey("zeta", "acct.1", "US.abc")
    with pytest.raises(InvalidKeyError):
        ConversationKey("zeta", "acct.1", "acct.1", "no spaces")


@pytest.mark.parametrize(
    ("name", "ids"),
    [
        ("hash", r"[a-z#]{1,9}"),  # a separator in an id would split the key
        ("colon", r"[a-z:]{1,9}"),
        ("Upper", r"[a-z]{1,9}"),  # a platform name is lower-case letters
        ("slack", r"[0-9]{1,9}"),  # a known platform keeps its alphabet
    ],
)
def test_an_alphabet_that_would_break_the_layout_is_refused(name: str, ids: str) -> None:
    with pytest.raises(InvalidKeyError):
        register_platform(name, re.compile(ids))


def test_instagram_is_served_by_messengers_function_and_edge() -> None:
    assert platforms.function_of("instagram") == "messenger"
    assert platforms.adapter("instagram").__name__ == "handlers.messenger"
    # A timer set in an Instagram turn fires in the function whose edge set it: Messenger's.
    from handlers.messenger.edge import MessengerEdge
    from handlers.slack.edge import SlackEdge
    from handlers.whatsapp.edge import WhatsAppEdge

    instagram = ConversationKey("instagram", "17841400000000001", "17841400000000001", "1")
    assert target_of(instagram, MessengerEdge.function) == "messenger"
    for edge in (SlackEdge, MessengerEdge, WhatsAppEdge):
        assert platforms.adapter(edge.function).__name__ == f"handlers.{edge.function}"
    assert target_of(ConversationKey.slack(team="T1", channel="C1", user="U1")) == "slack"


def test_timer_targets_are_every_platforms_arn_from_the_environment() -> None:
    settings = from_env(
        {
            "SESSIONS_TIMER_SLACK_ARN": "arn:slack",
            "SESSIONS_TIMER_MESSENGER_ARN": "arn:messenger",
            "SESSIONS_TIMER_ZETA_ARN": "arn:zeta",
            "SESSIONS_TIMER_ROLE_ARN": "arn:role",
            "SESSIONS_TIMER_DLQ_ARN": "arn:dlq",
            "SESSIONS_TIMER_EMPTY_ARN": "",
        }
    )
    assert dict(settings.timer_targets) == {
        "slack": "arn:slack",
        "messenger": "arn:messenger",
        "zeta": "arn:zeta",
    }


def test_a_delivery_of_a_registered_page_keyed_platform_survives_its_hand_off() -> None:
    register_platform("eta", re.compile(r"[A-Za-z0-9._-]{1,64}"))
    key = ConversationKey("eta", "acct.1", "acct.1", "US.abc")
    message = Message(platform="eta", workspace="acct.1", conversation="acct.1", user="US.abc")
    delivery = Delivery(key, "mid:1", message, 1.5, MessengerRoute("m.1"))
    back = load(dump(delivery))
    assert isinstance(back, Delivery)
    assert back.key == key and back.route == MessengerRoute("m.1")
