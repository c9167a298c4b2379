"""Which of a bot's scopes are shared is decided in one place (``membership.shared_scopes``),
by asking the item's key: the same answer as the table layout's, on every platform."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from bot.messages import Message
from bot.spec import BotSpec
from handlers.pipeline import membership
from sessions import ConversationKey, InvalidKeyError, UserKey

CONVERSATIONS = [
    ConversationKey.slack(team="T0001", channel="C0001", user="U0001"),
    ConversationKey.slack(team="T0001", channel="D0001", user="U0001", enterprise="E0001"),
    ConversationKey.messenger(page="1234", psid="5678"),
    ConversationKey.instagram(account="1234", igsid="5678"),
]


class _Bot:
    def __init__(self, scope: tuple[str, ...]) -> None:
        self.scope = scope

    def turn(self, state: object, message: Message) -> object:
        return state


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=lambda k: k.platform)
@pytest.mark.parametrize(
    "scopes",
    [s for n in (1, 2, 3) for s in itertools.permutations(("conversation", "channel", "user"), n)],
)
def test_the_shared_scopes_are_the_ones_whose_keys_say_so(
    conversation: ConversationKey, scopes: tuple[str, ...]
) -> None:
    spec = BotSpec.of(_Bot(scopes))
    expected = tuple(
        i for i, s in enumerate(spec.scopes) if conversation.scoped(s, spec.namespace).shared
    )
    assert membership.shared_scopes(spec, conversation) == expected
    message = Message(
        platform=conversation.platform,
        workspace=conversation.workspace,
        conversation=conversation.channel,
        user=conversation.user,
    )
    assert membership.conversation_of(message) == dataclasses.replace(conversation, enterprise=None)
    assert membership.shared_scopes(spec, membership.conversation_of(message)) == expected
    # Only a Slack channel's state is shared (the layout's rule, not restated here).
    if "channel" in scopes and conversation.platform == "slack":
        assert expected == (scopes.index("channel"),)
    else:
        assert expected == ()


def test_a_message_of_no_conversation_is_refused() -> None:
    with pytest.raises(InvalidKeyError):
        membership.conversation_of(Message(text="hi"))


@pytest.mark.parametrize(
    ("user", "marks"),
    [
        (UserKey("slack", "T0001", "U0001"), True),
        (UserKey("messenger", "1234", "5678"), False),
        (UserKey("instagram", "1234", "5678"), False),
    ],
)
def test_only_a_user_of_a_platform_with_shared_items_has_channels(
    user: UserKey, marks: bool
) -> None:
    conversation = membership._any_conversation(user)
    assert conversation.user_key == user
    assert any(conversation.scoped(s, None).shared for s in ("channel",)) is marks
