"""The one delivery pipeline, through both edges with really signed requests, on SQLite and
DynamoDB Local: replies rendered once and in the bot's order (a slash command whose modal
cannot open), nothing cut (fifty blocks), a sender's messages in timestamp order whatever
their speed, effects started after the turn (each follow-up a turn with its own report), and
deliveries serialised by one pair of functions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import handlers.messenger
import handlers.slack
from bot import Bot, Button, Effect, EffectCall, Field, Message, Modal, Outcome, Reply, effect
from handlers.pipeline.delivery import (
    BadJob,
    Delivery,
    EffectJob,
    MessengerRoute,
    SlackRoute,
    dump,
    load,
)
from handlers.settings import from_env
from handlers.slack import render as slack_render
from sessions import ConversationKey, Sessions, TurnReport
from sessions.store import Store
from tests.fakes import FakeSlack, QueueDeferrer, fake_slack
from tests.functional.conftest import select_store
from tests.keys import stored as stored_key
from tests.messenger_requests import batch, post, text
from tests.slack_requests import dm_body, json_event, slash

SLACK_KEY = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
MESSENGER_KEY = ConversationKey.messenger(page="100200300", psid="5550001")


class World:
    def __init__(self, fake: FakeSlack, store: Store) -> None:
        self.fake = fake
        self.store = store
        self.reports: list[TurnReport] = []
        self.sessions = Sessions(store, observer=self.reports.append)
        self.deferrer = QueueDeferrer()

    def slack(self, bot: Any) -> handlers.slack.SlackEdge:
        return handlers.slack.build(
            from_env(), sessions=self.sessions, bot=bot, deferrer=self.deferrer
        )

    def messenger(self, bot: Any) -> handlers.messenger.MessengerEdge:
        return handlers.messenger.build(
            from_env(), sessions=self.sessions, bot=bot, deferrer=self.deferrer
        )


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


# -- render once ----------------------------------------------------------------------------------


class Former(Bot[dict[str, Any]]):
    """``/form <visibility>`` opens a modal and says something beside it."""

    commands: ClassVar[tuple[str, ...]] = ("/form",)
    actions: ClassVar[tuple[str, ...]] = ("form:send",)

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        modal = Modal("form:send", "Tell me", [Field("what", "What?")], fallback="FALLBACK")
        replies: list[Any] = [modal]
        for visibility in (message.text or "").split():
            replies.append(Reply(f"said {visibility}", visibility=visibility))  # type: ignore[arg-type]
        return Outcome(state, replies)


VIEWS_OPEN_FAILS = (200, {"ok": False, "error": "expired_trigger_id"})


def test_a_command_whose_modal_cannot_open_sends_its_fallback_and_each_reply_once(
    world: World,
) -> None:
    slack = world.slack(Former())
    world.fake.failures["/api/views.open"] = [VIEWS_OPEN_FAILS]
    url = world.fake.response_url("c1")
    ack = ok(slack.handle(slash("in_channel", command="/form", response_url=url)))
    # Two messages (the fallback is private, the reply public): both through response_url, in
    # the bot's order; the ack carries neither, so nothing can arrive twice or out of order.
    assert ack["body"] == ""
    said = [(c.body["text"], c.body["response_type"]) for c in world.fake.responses()]
    assert said == [("FALLBACK", "ephemeral"), ("said in_channel", "in_channel")]


def test_a_fallback_of_the_same_visibility_shares_the_ack_with_the_reply(world: World) -> None:
    slack = world.slack(Former())
    world.fake.failures["/api/views.open"] = [VIEWS_OPEN_FAILS]
    url = world.fake.response_url("c2")
    ack = json.loads(
        ok(slack.handle(slash("ephemeral", command="/form", response_url=url)))["body"]
    )
    assert ack["response_type"] == "ephemeral"
    assert ack["text"] == "FALLBACK\n\nsaid ephemeral"
    assert world.fake.responses() == []


def test_a_modal_that_opens_leaves_the_reply_alone_in_the_ack(world: World) -> None:
    slack = world.slack(Former())
    ack = json.loads(ok(slack.handle(slash("ephemeral", command="/form")))["body"])
    assert ack["text"] == "said ephemeral"
    [opened] = [c for c in world.fake.calls if c.path == "/api/views.open"]
    assert "FALLBACK" not in json.dumps(opened.body)


class Talker(Bot[dict[str, Any]]):
    commands: ClassVar[tuple[str, ...]] = ("/talk",)

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        return Outcome(state, [Reply(f"line {n}") for n in range(1, 4)] + [
            Reply("public", visibility="in_channel"), Reply("private again"),
        ])  # fmt: skip


def test_a_commands_messages_arrive_in_the_order_the_bot_returned(world: World) -> None:
    slack = world.slack(Talker())
    url = world.fake.response_url("c3")
    ack = ok(slack.handle(slash("", command="/talk", response_url=url)))
    assert ack["body"] == ""
    said = [c.body["text"] for c in world.fake.responses()]
    assert said == ["line 1\n\nline 2\n\nline 3", "public", "private again"]


# -- nothing cut ---------------------------------------------------------------------------------


class Lister(Bot[dict[str, Any]]):
    actions: ClassVar[tuple[str, ...]] = ("pick",)

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        row = {"type": "section", "text": {"type": "mrkdwn", "text": "row"}}
        return Outcome(state, [
            Reply("rows", blocks=[row] * 49),
            Reply("Pick one", [Button("Yes", "pick", "y"), Button("No", "pick", "n")]),
        ])  # fmt: skip


def test_replies_past_fifty_blocks_become_another_message_with_their_buttons(
    world: World,
) -> None:
    slack = world.slack(Lister())
    ok(slack.handle(json_event(dm_body("show"))))
    posts = world.fake.posts()
    blocks = [p.body["blocks"] for p in posts]
    assert [len(b) for b in blocks] == [49, 2]
    last = blocks[-1]
    assert [e["value"] for e in last[-1]["elements"]] == ["y", "n"]


def test_a_reply_longer_than_a_message_becomes_several_and_a_long_text_more_sections() -> None:
    many = [{"type": "divider"}] * 120
    messages = slack_render.render([Reply("x", blocks=many)])
    assert [len(m["blocks"]) for m in messages] == [50, 50, 20]
    long = "\n".join(f"{n:05d} " + "z" * 94 for n in range(100))  # 10,000 characters
    [message] = slack_render.render([Reply(long)])
    shown = "\n".join(b["text"]["text"] for b in message["blocks"])
    assert shown == long and all(len(b["text"]["text"]) <= 3000 for b in message["blocks"])
    buttons = [Button(str(n), "pick", str(n)) for n in range(30)]
    [message] = slack_render.render([Reply("many", buttons)])
    values = [
        e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert values == [str(n) for n in range(30)]


# -- a sender's order ----------------------------------------------------------------------------


class Recorder(Bot[dict[str, Any]]):
    """Keeps the texts in the order their turns ran; ``slow…`` messages are slow."""

    def initial_state(self) -> dict[str, Any]:
        return {"seen": []}

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        return Outcome({"seen": [*state["seen"], message.text]}, [])

    def is_slow(self, message: Message) -> bool:
        return (message.text or "").startswith("slow")


def test_a_slow_message_is_never_overtaken_by_the_same_senders_fast_one(world: World) -> None:
    messenger = world.messenger(Recorder())
    other = "5550002"
    messages = [
        text("slow one", timestamp=1_790_000_000_000),
        text("fast two", timestamp=1_790_000_000_001),
        text("fast three", timestamp=1_790_000_000_002),
        text("fast elsewhere", psid=other, timestamp=1_790_000_000_001),
    ]
    ok(messenger.handle(post(batch(("100200300", messages)))))
    mine = stored_key(MESSENGER_KEY, Recorder())
    assert world.sessions.get(mine) is None  # nothing ran ahead of the slow one
    elsewhere = world.sessions.get(
        stored_key(ConversationKey.messenger(page="100200300", psid=other), Recorder())
    )
    assert elsewhere is not None and elsewhere.state["seen"] == ["fast elsewhere"]
    [job] = world.deferrer.jobs  # the slow one and the later ones, as one job in order
    world.deferrer.jobs.append(dict(job))  # Lambda may run an async invoke twice
    world.deferrer.drain(messenger.run_deferred)
    stored = world.sessions.get(mine)
    assert stored is not None and stored.state["seen"] == ["slow one", "fast two", "fast three"]


# -- effects after the turn ------------------------------------------------------------------------


class Pinger(Bot[dict[str, Any]]):
    def initial_state(self) -> dict[str, Any]:
        return {"pongs": 0}

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        if message.kind == "effect":
            return Outcome({"pongs": state["pongs"] + 1}, [Reply(f"pong {message.result}")])
        return Outcome(state, [Reply("ping")], [Effect("ping", {"n": 7})])

    @effect("ping")
    def ping(self, args: Any, call: EffectCall) -> Any:
        return args["n"]


def test_an_effect_starts_after_the_turn_and_its_follow_up_reports_on_its_own(
    world: World,
) -> None:
    slack = world.slack(Pinger())
    ok(slack.handle(json_event(dm_body("go"))))
    assert [p.body["text"] for p in world.fake.posts()] == ["ping", "pong 7"]
    first, follow = world.reports
    # The first turn's report is its own: the follow-up ran after it, not inside it.
    assert first.idempotency_key.startswith("event:") and first.outcome == "applied"
    assert follow.idempotency_key.startswith("followup:") and follow.outcome == "applied"
    assert first.store_calls == 2 and follow.store_calls == 2
    if first.write_units is not None:  # DynamoDB reports what each request cost
        assert first.write_units > 0 and follow.write_units and follow.write_units > 0


def test_an_effect_past_the_webhooks_budget_is_handed_off(world: World) -> None:
    slack = world.slack(Pinger())
    slack.turn_budget = 0.0  # the budget is spent at once
    ok(slack.handle(json_event(dm_body("go"))))
    assert [p.body["text"] for p in world.fake.posts()] == ["ping"]
    [job] = world.deferrer.jobs
    assert job["kind"] == "effect"
    world.deferrer.drain(slack.run_deferred)
    assert [p.body["text"] for p in world.fake.posts()] == ["ping", "pong 7"]


# -- one pair of functions -------------------------------------------------------------------------


def test_a_delivery_survives_its_serialised_form_and_the_old_job_shape_still_loads() -> None:
    message = Message(text="hi", platform="slack", workspace="T0001", conversation="C0001",
                      user="U0001", time=1.5)  # fmt: skip
    route = SlackRoute("command", "https://hooks.slack.com/x", "trig")
    delivery = Delivery(SLACK_KEY, "trigger:trig", message, 1.5, route)
    assert load(json.loads(json.dumps(dump(delivery)))) == delivery
    fx = delivery.effect(0, Effect("ping", {"n": 1}))
    assert load(dump(fx)) == fx and isinstance(load(dump(fx)), EffectJob)
    assert fx.follow_up(message).route.trigger_id is None  # a trigger is long used by then
    mine = Delivery(MESSENGER_KEY, "mid:m1", message, 2.0, MessengerRoute("m1"))
    assert load(dump((delivery, mine))) == (delivery, mine)
    # A dead letter recorded by the previous release (the untyped job dict) still replays.
    old = {"platform": "messenger", "kind": "message", "key": {"page": "100200300",
           "psid": "5550001"}, "idempotency_key": "mid:m1", "mid": "m1",
           "message": message.to_dict(), "event_time": 2.0}  # fmt: skip
    assert load(old) == mine
    for bad in ({}, {"platform": "irc"}, [], {"kind": "sequence", "items": [dump(fx)]}):
        with pytest.raises(BadJob):
            load(bad)


# -- the budget on the edge ------------------------------------------------------------------------


class Verbose(Bot[dict[str, Any]]):
    commands: ClassVar[tuple[str, ...]] = ("/long",)
    actions: ClassVar[tuple[str, ...]] = ("pick",)

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        lines = [f"{n}. item number {n} of a long list" for n in range(1, 30)]
        buttons = [Button("Done", "pick", str(n), line=line) for n, line in enumerate(lines, 1)]
        return Outcome({"n": state.get("n", 0) + 1}, [Reply("\n".join(lines), buttons)])


def test_a_slash_command_with_a_long_answer_is_still_one_read_and_one_write(
    world: World,
) -> None:
    if not hasattr(world.store, "client"):
        pytest.skip("requests are counted on DynamoDB")
    from tests.integration.test_request_budget import RequestCounter

    slack = world.slack(Verbose())
    ok(slack.handle(slash("", command="/long")))  # creates the conversation
    counter = RequestCounter(world.store.client)
    answer = json.loads(ok(slack.handle(slash("", command="/long")))["body"])
    assert len(json.dumps(answer)) > 2000  # a response this long would need its own item
    assert counter.take() == {"GetItem": 1, "PutItem": 1}
