"""Scopes and namespaces through the real edges, on SQLite and on DynamoDB Local: a channel's
state shared by its users (the poll), a user's state that follows them from channel to
channel, a turn over two scopes committed together (the standup), a user delete that reaches
the channels they wrote to, and bots that share a table without seeing each other."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import handlers.messenger
import handlers.slack
from bot import Bot, Message, Outcome
from examples.poll import PollBot
from examples.quiz import Quiz
from examples.standup import Standup
from examples.todo import TodoBot
from handlers.settings import from_env
from handlers.tools import admin
from sessions import ConversationKey, Sessions
from sessions.store import Store
from tests.fakes import FakeSlack, QueueDeferrer, fake_slack
from tests.functional.conftest import select_store
from tests.messenger_requests import post, single, text
from tests.slack_requests import block_action, dm_body, json_event, slash, view_submission

CHANNEL = "C0LUNCH"


class World:
    def __init__(self, fake: FakeSlack, store: Store) -> None:
        self.fake, self.store = fake, store
        self.sessions = Sessions(store)
        self.deferrer = QueueDeferrer()

    def slack(self, bot: Any) -> handlers.slack.SlackEdge:
        return handlers.slack.build(
            from_env(), sessions=self.sessions, bot=bot, deferrer=self.deferrer
        )

    def messenger(self, bot: Any) -> handlers.messenger.MessengerEdge:
        return handlers.messenger.build(
            from_env(), sessions=self.sessions, bot=bot, deferrer=self.deferrer
        )

    def state(self, key: ConversationKey, scope: str, namespace: str | None) -> Any:
        found = self.sessions.get(key.scoped(scope, namespace))
        return None if found is None else found.state


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def world(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[World]:
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        store = select_store(request, monkeypatch, tmp_path)
        yield World(fake, store)
        store.close()


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["statusCode"] == 200, answer
    return answer


def vote(user: str, option: int, url: str) -> dict[str, Any]:
    return block_action(
        f"1:{option}", channel=CHANNEL, user=user, action_id="poll:vote", response_url=url
    )


def test_a_poll_is_shared_by_the_channel_and_apart_from_each_users_state(world: World) -> None:
    slack = world.slack(PollBot())
    ack = json.loads(ok(slack.handle(slash("Lunch? pizza, sushi", command="/poll",
                                           channel=CHANNEL, user="U0ALICE")))["body"])  # fmt: skip
    assert ack["response_type"] == "in_channel" and "Lunch?" in ack["text"]
    ok(slack.handle(vote("U0BOB", 1, world.fake.response_url("bob"))))
    ok(slack.handle(vote("U0ALICE", 0, world.fake.response_url("alice"))))
    ok(slack.handle(vote("U0BOB", 0, world.fake.response_url("bob2"))))  # Bob changes his mind

    alice = ConversationKey.slack(team="T0001", channel=CHANNEL, user="U0ALICE")
    bob = ConversationKey.slack(team="T0001", channel=CHANNEL, user="U0BOB")
    poll = world.state(alice, "channel", "poll")
    assert poll == world.state(bob, "channel", "poll")  # one item for the channel
    assert poll["polls"]["1"]["votes"] == {"U0BOB": 0, "U0ALICE": 0}
    assert world.state(alice, "conversation", "poll") is None  # nothing private was written
    # The tally replaced the poll message; the voter alone heard what they voted.
    last = world.fake.responses()[-2:]
    assert last[0].body["replace_original"] is True
    assert "pizza: 2 votes" in last[0].body["text"]
    assert last[1].body == {**last[1].body, "response_type": "ephemeral",
                            "replace_original": False, "text": "You voted pizza."}  # fmt: skip
    # Another channel has a state of its own.
    other = block_action("1:0", channel="C0OTHER", user="U0BOB", action_id="poll:vote",
                         response_url=world.fake.response_url("other"))  # fmt: skip
    ok(slack.handle(other))
    assert world.fake.responses()[-1].body["text"] == "There is no such poll here."


class Preferences(Bot[dict[str, Any]]):
    """A user-scope bot: the user's language follows them from channel to channel."""

    scope: ClassVar[str | tuple[str, ...]] = "user"

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        words = message.text.split()
        if words[:1] == ["lang"] and len(words) == 2:
            return Outcome({**state, "lang": words[1]}, [f"Language: {words[1]}"])
        return Outcome(state, [f"Your language is {state.get('lang', 'unset')}"])


def test_a_user_scope_follows_the_user_across_channels(world: World) -> None:
    slack = world.slack(Preferences())
    ok(slack.handle(json_event(dm_body("lang fr", channel="D0001", user="U0001"))))
    ok(slack.handle(json_event(dm_body("which?", channel="D0002", user="U0001"))))
    ok(slack.handle(json_event(dm_body("which?", channel="D0003", user="U0002"))))
    said = [c.body["text"] for c in world.fake.posts()]
    assert said == ["Language: fr", "Your language is fr", "Your language is unset"]
    key = ConversationKey.slack(team="T0001", channel="D0009", user="U0001")
    assert world.state(key, "user", "Preferences") == {"lang": "fr"}

    messenger = world.messenger(Preferences())
    ok(messenger.handle(post(single(text("lang de", psid="5550001")))))
    ok(messenger.handle(post(single(text("which?", psid="5550001")))))
    assert [c.body["message"]["text"] for c in world.fake.sends()] == [
        "Language: de",
        "Your language is de",
    ]


def test_a_turn_over_two_scopes_commits_both_once(world: World) -> None:
    slack = world.slack(Standup())
    ok(slack.handle(slash("", command="/standup", channel=CHANNEL, user="U0ALICE")))
    views = []
    for user in ("U0ALICE", "U0BOB"):
        press = block_action("", channel=CHANNEL, user=user, action_id="standup:answer",
                             response_url=world.fake.response_url(user))  # fmt: skip
        ok(slack.handle(press))
        views.append(
            (user, [c for c in world.fake.calls if c.path == "/api/views.open"][-1].body["view"])
        )
    for user, view in views:
        submitted = view_submission(view, {"yesterday": f"{user} y", "today": f"{user} t"},
                                    user=user)  # fmt: skip
        ok(slack.handle(submitted))
        ok(slack.handle(submitted))  # the same submission again: applied once
    alice = ConversationKey.slack(team="T0001", channel=CHANNEL, user="U0ALICE")
    channel = world.state(alice, "channel", "standup")
    assert sorted(channel["round"]["answers"]) == ["U0ALICE", "U0BOB"]
    assert world.state(alice, "conversation", "standup")["last"]["today"] == "U0ALICE t"

    close = block_action("", channel=CHANNEL, user="U0BOB", action_id="standup:close",
                         response_url=world.fake.response_url("close"))  # fmt: skip
    ok(slack.handle(close))
    assert world.state(alice, "channel", "standup")["round"] is None
    world.deferrer.drain(slack.run_deferred)  # the slow summary, then its follow-up turn
    summary = world.fake.responses()[-1].body["text"]
    assert summary.startswith("*Standup #1*") and "U0BOB y" in summary


def test_a_user_delete_reaches_the_channels_they_wrote_to(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    slack = world.slack(PollBot())
    for channel in (CHANNEL, "C0SECOND"):
        ok(slack.handle(slash("Lunch? pizza, sushi", command="/poll", channel=channel,
                              user="U0ALICE")))  # fmt: skip
        for user in ("U0ALICE", "U0BOB"):
            event = block_action("1:1", channel=channel, user=user, action_id="poll:vote",
                                 response_url=world.fake.response_url(user))  # fmt: skip
            ok(slack.handle(event))
    late = block_action("1:0", channel=CHANNEL, user="U0BOB", action_id="poll:vote",
                        response_url=world.fake.response_url("late"))  # fmt: skip

    monkeypatch.setenv("BOT", "examples.poll:bot")
    bob = ConversationKey.slack(team="T0001", channel=CHANNEL, user="U0BOB")
    answer = admin.main(["delete", "--yes", "--settle", "0", bob.user_key.pk],
                        stdin=io.StringIO())  # fmt: skip
    assert answer == 0
    assert "forgot the user on 2 channel(s)" in capsys.readouterr().out
    for channel in (CHANNEL, "C0SECOND"):
        key = ConversationKey.slack(team="T0001", channel=channel, user="U0ALICE")
        polls = world.state(key, "channel", "poll")
        assert polls["state"]["polls"]["1"]["votes"] == {"U0ALICE": 1}
    assert [sk for sk, _ in world.store.user_items(bob.user_key)] == ["#tombstone"]

    # A vote Bob made before the delete, arriving after it: consumed, changes nothing.
    ok(slack.handle(late))
    key = ConversationKey.slack(team="T0001", channel=CHANNEL, user="U0ALICE")
    assert world.state(key, "channel", "poll")["state"]["polls"]["1"]["votes"] == {"U0ALICE": 1}
    assert world.fake.responses()[-1].body["text"] != "You voted pizza."


class Lister(Bot[dict[str, Any]]):
    """A second bot with a state of another shape on the same table."""

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        seen = [*state.get("seen", []), message.text]
        return Outcome({"seen": seen}, [f"{len(seen)} seen"])


def test_bots_on_one_table_never_see_each_others_state(world: World) -> None:
    ok(world.slack(TodoBot()).handle(json_event(dm_body("add milk"))))
    # Switching BOT: the new bot starts fresh instead of getting the todo bot's state.
    ok(world.slack(Lister()).handle(json_event(dm_body("hello"))))
    ok(world.slack(Quiz()).handle(json_event(dm_body("score"))))
    ok(world.slack(TodoBot()).handle(json_event(dm_body("list"))))
    said = [c.body["text"] for c in world.fake.posts()]
    assert said[1] == "1 seen"
    assert said[2] == "Best round: 0/4 over 0 rounds."  # a fresh quiz, not the todo state
    assert "1. milk" in said[3]
    user = ConversationKey.slack(team="T0001", channel="D0001", user="U0001").user_key
    assert sorted(c.key.sk for c in world.sessions.conversations(user)) == [
        "Lister:D0001",
        "Quiz:D0001",
        "todo:D0001",
    ]


class OldTodo(TodoBot):
    """The todo bot as deployed before namespaces: it keeps reading the items it wrote."""

    namespace: ClassVar[str | None] = None


def test_a_bot_without_a_namespace_keeps_reading_the_items_written_before(world: World) -> None:
    old = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
    assert old.sk == "D0001"  # the layout before namespaces
    state = {"items": [{"id": 1, "text": "from before"}], "next_id": 2, "pending": None}
    world.sessions.run(old, "seed", lambda s, e: (state, [], None), None)
    ok(world.slack(OldTodo()).handle(json_event(dm_body("list"))))
    assert "1. from before" in world.fake.posts()[-1].body["text"]
    ok(world.slack(TodoBot()).handle(json_event(dm_body("list"))))  # namespaced: fresh
    assert "1. from before" not in world.fake.posts()[-1].body["text"]


def test_the_standup_on_messenger_asks_step_by_step(world: World) -> None:
    """No forms on Messenger: the user's draft keeps where they are; their last answer closes
    the round (a page and one user) and a slow effect's follow-up posts the summary."""
    messenger = world.messenger(Standup())
    for said in ("standup", "wrote tests", "ship scopes", "none"):
        ok(messenger.handle(post(single(text(said, psid="5550001")))))
    texts = [c.body["message"]["text"] for c in world.fake.sends()]
    assert texts[:3] == [
        "What did you do yesterday?",
        "What will you do today?",
        "Anything blocking you?",
    ]
    assert "Thanks, your answer is in." in texts
    world.deferrer.drain(messenger.run_deferred)
    summary = [c.body["message"]["text"] for c in world.fake.sends()][-1]
    assert summary.startswith("*Standup #1*") and "ship scopes" in summary
    key = ConversationKey.messenger(page="100200300", psid="5550001")
    assert world.state(key, "conversation", "standup")["last"]["today"] == "ship scopes"
    assert world.state(key, "channel", "standup")["round"] is None


def test_the_serial_queue_consumer_runs_a_queued_vote_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the deploy's consumer does with a vote that was busy at its webhook's deadline:
    the queued job runs through the edge of its platform, once, even when SQS delivers it
    twice."""
    import time

    from bot import Message
    from handlers.pipeline.delivery import Delivery, SlackRoute, dump
    from handlers.serial import Consumer

    monkeypatch.setenv("BOT", "examples.poll:bot")
    ok(world.slack(PollBot()).handle(slash("Lunch? pizza, sushi", command="/poll",
                                            channel=CHANNEL, user="U0ALICE")))  # fmt: skip
    now = time.time()
    bob = ConversationKey.slack(team="T0001", channel=CHANNEL, user="U0BOB")
    vote_ = Message(kind="action", action="poll:vote", value="1:1", platform="slack",
                    workspace="T0001", conversation=CHANNEL, user="U0BOB", time=now)  # fmt: skip
    route = SlackRoute("action", response_url=world.fake.response_url("bob"))
    body = json.dumps(dump(Delivery(bob, "action:bob-1", vote_, now, route)))
    records = [
        {"messageId": str(n), "body": body, "attributes": {"MessageGroupId": "g"}} for n in range(2)
    ]
    assert Consumer()({"Records": records}) == {"batchItemFailures": []}
    poll = world.state(bob, "channel", "poll")
    assert poll["polls"]["1"]["votes"] == {"U0BOB": 1}
    told = [c for c in world.fake.responses() if c.body.get("text") == "You voted sushi."]
    assert len(told) == 1


class Fragile(PollBot):
    """The poll with a bug in its vote: a vote for the second option raises."""

    def turn(self, state: Any, message: Message) -> Any:
        if message.action == "poll:vote" and (message.value or "").endswith(":1"):
            raise ValueError("bug in the vote")
        return super().turn(state, message)


def test_a_channels_dead_letters_are_listed_and_replayed_by_its_partition(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    slack = world.slack(Fragile())
    ok(slack.handle(slash("Lunch? pizza, sushi", command="/poll", channel=CHANNEL,
                          user="U0ALICE")))  # fmt: skip
    ok(slack.handle(vote("U0BOB", 1, world.fake.response_url("bob"))))  # dead-lettered
    channel = f"slack#T0001#{CHANNEL}#channel"
    assert admin.main(["list", channel]) == 0
    assert capsys.readouterr().out.startswith("poll:~channel\t")
    assert admin.main(["dead-letters", channel]) == 0
    listed = capsys.readouterr().out.strip().split("\t")
    assert listed[2] == "replayable" and listed[3].startswith("TurnError")
    monkeypatch.setenv("BOT", "examples.poll:bot")  # the fixed bot
    assert admin.main(["retry", channel, listed[0]]) == 0
    bob = ConversationKey.slack(team="T0001", channel=CHANNEL, user="U0BOB")
    assert world.state(bob, "channel", "poll")["polls"]["1"]["votes"] == {"U0BOB": 1}
    assert admin.main(["delete", "--yes", channel]) == 1  # everyone's: not deletable as a user


class PlainCounter:
    """A bot that is not a ``bot.Bot``: it declares its scope and namespace all the same."""

    scope = "channel"
    namespace = "plain"

    def turn(self, state: Any, message: Message) -> Any:
        n = (state or {}).get("n", 0) + 1
        return {"n": n}, [f"{n} in this channel"]


def test_a_plain_object_bot_declares_its_scope_too(world: World) -> None:
    slack = world.slack(PlainCounter())
    for user in ("U0001", "U0002", "U0003"):
        ok(slack.handle(json_event(dm_body("hi", channel="C0SHARED", user=user))))
    said = [c.body["text"] for c in world.fake.posts()]
    assert said == ["1 in this channel", "2 in this channel", "3 in this channel"]
    key = ConversationKey.slack(team="T0001", channel="C0SHARED", user="U0009")
    assert world.state(key, "channel", "plain") == {"n": 3}
