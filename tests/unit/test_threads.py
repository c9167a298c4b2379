"""The pure rules of threads and assistant replies: thread keys (with the ``ts`` Slack really
sends), messages and replies as stored, where a reply goes, and how Messenger shows an
assistant's status and prompts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import Message, Prompts, Reply, Status, Title
from bot.replies import reply_from_dict
from bot.spec import BotSpec
from handlers.messenger import assistant as messenger_assistant
from handlers.messenger import parse as mparse
from handlers.messenger import render as mp
from handlers.pipeline.delivery import SlackRoute, dump, load
from handlers.slack import threads as slack_threads
from sessions import ConversationKey, InvalidKeyError
from sessions.keys import conversation_from_item
from tests.bots.threaded import Threaded

#: Slack's ts: epoch seconds, a dot, six digits ("1712345678.000100").
slack_ts = st.builds(
    lambda s, us: f"{s}.{us:06d}",
    st.integers(min_value=1_000_000_000, max_value=4_102_444_800),
    st.integers(min_value=0, max_value=999_999),
)


@given(root=slack_ts, namespace=st.sampled_from([None, "ai", "threaded"]))
def test_a_thread_key_is_the_channels_and_reads_back(root: str, namespace: str | None) -> None:
    key = ConversationKey.slack(team="T0001", channel="C0001", user="U0001", thread=root)
    item = key.scoped("thread", namespace)
    assert item.shared and item.pk == "slack#T0001#C0001#channel"
    assert item.sk.endswith(f"~thread.{root}")
    back = conversation_from_item(item.pk, item.sk)
    assert (back.scope, back.thread, back.namespace) == ("thread", root, namespace)
    assert back.scoped("thread", namespace).sk == item.sk
    # Its event records stay under it (one thread's never another's).
    assert item.event_sk("event:Ev1").startswith(item.sk + "#evt#")


@given(a=slack_ts, b=slack_ts)
def test_two_threads_never_share_an_item(a: str, b: str) -> None:
    key = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
    one = ConversationKey.slack(team="T0001", channel="C0001", user="U0001", thread=a)
    other = ConversationKey.slack(team="T0002", channel="C0001", user="U0001", thread=b)
    assert (one.scoped("thread", "x").sk == other.scoped("thread", "x").sk) == (a == b)
    # The other scopes of a message in a thread are those of the channel, whatever the thread.
    for scope in ("channel", "conversation", "user"):
        assert one.scoped(scope, "x").pk == key.scoped(scope, "x").pk
        assert one.scoped(scope, "x").sk == key.scoped(scope, "x").sk


def test_without_a_thread_the_thread_scope_is_the_conversation() -> None:
    slash = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
    assert slash.scoped("thread", "x") == slash.scoped("conversation", "x")
    page = ConversationKey.messenger(page="100", psid="200")
    assert page.scoped("thread", "x").sk == "x:100" and not page.scoped("thread", "x").shared


@pytest.mark.parametrize(
    "bad", ["", "1712345678", "1712345678.", "abc.000100", "1.2.3", "\u0661.\u0662"]
)
def test_a_thread_that_is_no_slack_ts_is_refused(bad: str) -> None:
    with pytest.raises(InvalidKeyError):
        ConversationKey.slack(team="T0001", channel="C0001", user="U0001", thread=bad)
    with pytest.raises(InvalidKeyError):
        conversation_from_item("slack#T0001#C0001#channel", f"x:~thread.{bad}")


def test_only_slack_keys_carry_a_thread() -> None:
    with pytest.raises(InvalidKeyError):
        ConversationKey("messenger", "100", "100", "200", thread="1712345678.000100")


def test_a_message_keeps_its_thread_through_a_job() -> None:
    message = Message(text="hi", platform="slack", thread="1712345678.000100")
    assert Message.from_dict(message.to_dict()) == message
    assert Message.from_dict({"text": "old job"}).thread is None  # before threads


def test_a_delivery_keeps_its_thread_and_route_through_a_job() -> None:
    from handlers.pipeline.delivery import Delivery

    key = ConversationKey.slack(team="T0001", channel="C0001", user="U0001", thread="1.000001")
    route = SlackRoute("event", thread="1.000001", ts="2.000002")
    delivery = Delivery(key, "event:Ev1", Message(thread="1.000001"), 2.0, route)
    assert load(dump(delivery)) == delivery


@pytest.mark.parametrize(
    "reply",
    [
        Status("is thinking", ("Reading", "Writing")),
        Status(""),
        Prompts([("A", "say a"), ("B", "say b")], title="Try"),
        Title("Budget questions"),
        Reply("hi", in_thread=True),
    ],
)
def test_assistant_replies_read_back_as_stored(reply: Any) -> None:
    assert reply_from_dict(reply.to_dict()) == reply


def test_a_prompt_is_a_pair() -> None:
    with pytest.raises(TypeError):
        Prompts(["just a title"])  # type: ignore[list-item]


def test_a_thread_bot_returns_assistant_replies() -> None:
    spec = BotSpec.of(Threaded())
    assert spec.scopes == ("thread",)
    checked = spec.outcome({}, Message(kind="thread_started", payload={"channel": "C1"}))
    assert [r.kind for r in checked.replies] == ["status", "title", "prompts"]


def test_replies_go_to_the_thread_or_start_one() -> None:
    in_thread = SlackRoute("event", thread="1.000001", ts="2.000002")
    top = SlackRoute("event", ts="2.000002")
    command = SlackRoute("command", response_url="https://hooks.example/x")
    assert slack_threads.thread_of(in_thread, Reply("a")) == "1.000001"
    assert slack_threads.thread_of(top, Reply("a")) == ""
    assert slack_threads.thread_of(top, Reply("a", in_thread=True)) == "2.000002"
    assert slack_threads.thread_of(command, Reply("a", in_thread=True)) == ""
    sent = slack_threads.messages(
        top, [Reply("one"), Reply("two", in_thread=True), Status("x"), Reply("three")],
        visibility=None,
    )  # fmt: skip
    shown = [(m.get("text") if isinstance(m, dict) else m.kind, m.get("thread_ts") if
              isinstance(m, dict) else t) for m, t in sent]  # fmt: skip
    assert shown == [("one", None), ("two", "2.000002"), ("status", ""), ("three", None)]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"ts": "2.000002"}, (None, "2.000002")),
        ({"ts": "2.000002", "thread_ts": "1.000001"}, ("1.000001", "2.000002")),
        ({"ts": "1.000001", "thread_ts": "1.000001"}, (None, "1.000001")),  # the root itself
        ({"ts": "2.000002", "thread_ts": 1.000001}, (None, "2.000002")),  # not a ts
    ],
)
def test_an_events_thread(event: dict[str, Any], expected: tuple[Any, Any]) -> None:
    assert slack_threads.event_thread(event) == expected


def test_messenger_shows_a_status_as_typing_and_prompts_as_quick_replies() -> None:
    messages = mp.render(
        [
            Status("thinking"),
            Reply("Here you go"),
            Title("ignored"),
            Prompts([("More", "tell me more")]),
        ]
    )
    assert messages[0] == {"sender_action": "typing_on"}
    assert messages[1]["text"] == "Here you go"
    (quick,) = messages[1]["quick_replies"]
    assert quick["title"] == "More"
    assert len(messages) == 2  # the title is dropped
    # Tapping it sends the prompt's message, as if typed.
    assert mparse._tapped(quick["payload"], "More", lambda _a: True) == {
        "text": "tell me more",
        "payload": quick["payload"],
    }


def test_messenger_prompts_alone_get_a_message_of_their_own() -> None:
    long = "a prompt title longer than twenty"
    messages = mp.render([Prompts([(long, "x")] * 20, title="Ideas")])
    assert messages[0]["text"] == "Ideas"
    assert len(messages[0]["quick_replies"]) == messenger_assistant.MAX_QUICK_REPLIES
    assert all(len(q["title"]) <= 20 for q in messages[0]["quick_replies"])
    # A turn whose last message has quick replies of its own: the prompts come after it.
    from bot.replies import Button

    messages = mp.render([Reply("vote", [Button("Yes", "yes")]), Prompts([("A", "a")])])
    assert messages[-1]["text"] == messenger_assistant.SUGGESTIONS


def test_bot_testing_keeps_threads_status_prompts_and_title() -> None:
    from bot.testing import Conversation
    from tests.bots.threaded import PROMPTS

    chat = Conversation(Threaded())
    chat.start_thread(channel="C0VIEW", root="1712345678.000100")
    assert (chat.thread, chat.title, chat.status) == ("1712345678.000100", "New chat",
                                                      "is getting ready")  # fmt: skip
    assert chat.prompts == PROMPTS
    assert chat.state == {"viewing": "C0VIEW"}
    chat.say("hello")
    assert chat.status == ""  # the reply cleared it
    assert [r.text for r in chat.threads["1712345678.000100"]] == ["1 notes in this thread"]
    chat.change_context("C0OTHER")
    assert chat.state["viewing"] == "C0OTHER"
    # Another thread of the channel: a state of its own; a top-level message starts one.
    bob = chat.as_user("U0BOB").in_thread("1712345999.000200")
    bob.say("mine")
    assert [n["text"] for n in bob.state["notes"]] == ["mine"]
    chat.in_thread(None).say("top")
    assert [n["text"] for n in chat.state["notes"]] == ["top"]
    # A timer set in a thread fires there.
    chat.in_thread("1712345678.000100").say("remind me")
    fired = chat.advance(61)
    assert [r.text for r in fired] == ["Nudge: 1 notes"]
    assert chat.threads["1712345678.000100"][-1] == fired[0]
    # On Messenger the thread scope is the conversation's.
    page = Conversation(Threaded(), platform="messenger", user="5550001", conversation="100")
    page.say("a")
    page.say("b")
    assert [n["text"] for n in page.state["notes"]] == ["a", "b"]
