"""The example bots, and bots we did not write, through both edges with really signed
requests, on SQLite and on DynamoDB Local: commands and buttons routed from the bot's
declarations, quick replies and postbacks, a Slack modal submitted, an effect run once after
the commit with its follow-up turn, a state migration, and a malformed bot dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

import handlers.messenger
import handlers.slack
from bot import Bot, Effect, EffectCall, Message, Outcome, Reply, effect
from examples.intake import Intake
from examples.quiz import Quiz
from handlers.messenger.parse import encode_payload
from handlers.pipeline import new_conversation
from handlers.settings import from_env
from sessions import ConversationKey, Sessions
from sessions.store import Store
from tests.fakes import Call, FakeSlack, QueueDeferrer, fake_slack
from tests.functional.conftest import select_store
from tests.keys import stored as stored_key
from tests.messenger_requests import post, postback, single, text
from tests.reliability.conftest import Crash
from tests.slack_requests import block_action, dm_body, json_event, slash, view_submission

SLACK_KEY = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
MESSENGER_KEY = ConversationKey.messenger(page="100200300", psid="5550001")


@dataclass
class World:
    fake: FakeSlack
    store: Store
    sessions: Sessions
    deferrer: QueueDeferrer

    def edges(self, bot: Any) -> tuple[handlers.slack.SlackEdge, handlers.messenger.MessengerEdge]:
        settings = from_env()
        kw = {"sessions": self.sessions, "bot": bot, "deferrer": self.deferrer}
        return handlers.slack.build(settings, **kw), handlers.messenger.build(settings, **kw)

    def calls(self, path: str) -> list[Call]:
        with self.fake.lock:
            return [c for c in self.fake.calls if c.path.startswith(path)]

    def slack_texts(self, path: str) -> list[str]:
        return [str(c.body.get("text")) for c in self.calls(path)]

    def graph(self) -> list[dict[str, Any]]:
        return [c.body["message"] for c in self.fake.sends()]


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def world(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[World]:
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("TICKETS_URL", f"{fake.url}/tickets")
        store = select_store(request, monkeypatch, tmp_path)
        yield World(fake, store, Sessions(store), QueueDeferrer())
        store.close()


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["statusCode"] == 200, answer
    return answer


def buttons(blocks: Any) -> list[dict[str, Any]]:
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    found = []
    for block in blocks:
        found += [e for e in block.get("elements", []) if e.get("type") == "button"]
    return found


# -- the quiz: buttons, a per-user score, a migration ---------------------------------------------


def test_quiz_on_slack_command_buttons_and_a_migrated_state(world: World) -> None:
    slack, _ = world.edges(Quiz())
    ack = json.loads(ok(slack.handle(slash("", command="/quiz")))["body"])
    assert ack["response_type"] == "ephemeral"
    assert "A quiz of 4 questions." in ack["text"] and "Q1." in ack["text"]
    answers = buttons(ack["blocks"])
    assert [b["action_id"] for b in answers] == ["quiz:answer"] * 3
    for number, choice in enumerate([1, 0, 0, 1]):  # right, right, wrong, right
        url = world.fake.response_url(f"q{number}")
        ok(slack.handle(block_action(f"{number}:{choice}", action_id="quiz:answer",
                                     response_url=url)))  # fmt: skip
    said = [c.body["text"] for c in world.fake.responses()]
    assert said[0].startswith("Right!") and "Q2." in said[0]
    assert said[2].startswith("No: it is 5 s.")
    assert said[-1].startswith("Right! You scored 3/4. Best: 3.")
    stored = world.sessions.get(stored_key(SLACK_KEY, Quiz()))
    assert stored is not None and stored.state["__schema__"] == 2
    assert stored.state["state"]["best"] == 3

    # A conversation that version 1 of the bot stored, mid-round: migrated on its next turn.
    dm = stored_key(ConversationKey.slack(team="T0001", channel="D0001", user="U0001"), Quiz())
    world.sessions.run(dm, "seed", lambda s, e: ({"question": 2, "score": 1}, [], None), None)
    ok(slack.handle(json_event(dm_body("score"))))
    assert world.fake.posts()[-1].body["text"] == (
        "This round: 1/2. Best round: 0/4 over 0 rounds."
    )


def test_quiz_on_messenger_button_template_and_postbacks(world: World) -> None:
    _, messenger = world.edges(Quiz())
    ok(messenger.handle(post(single(text("quiz")))))
    intro, question = world.graph()
    assert intro == {"text": "A quiz of 4 questions."}
    template = question["attachment"]["payload"]
    assert template["template_type"] == "button" and template["text"].startswith("Q1.")
    for _ in range(4):
        last = world.graph()[-1]["attachment"]["payload"]
        first = last["buttons"][0]  # always the first option
        ok(messenger.handle(post(single(postback(first["payload"], title=first["title"])))))
    final = world.graph()[-1]
    assert final["text"].startswith("No: it is event_id. You scored 1/4.")
    assert final["quick_replies"][0]["title"] == "Play again"
    conversation = world.sessions.get(stored_key(MESSENGER_KEY, Quiz()))
    assert conversation is not None and conversation.state["state"]["rounds"] == 1


# -- the intake: a modal, quick replies, an effect and its follow-up ------------------------------


def test_intake_on_slack_modal_submission_effect_and_follow_up(world: World) -> None:
    slack, _ = world.edges(Intake())
    command = slash("", command="/ticket", trigger_id="111.222.abc")
    assert ok(slack.handle(command))["body"] == ""  # only a modal: nothing to say in the ack
    [opened] = world.calls("/api/views.open")
    assert opened.body["trigger_id"] == "111.222.abc"
    view = opened.body["view"]
    assert view["callback_id"] == "intake:form"
    assert json.loads(view["private_metadata"])["channel"] == "C0001"

    # Submitted by another user of the team, or with the channel changed: refused, nothing
    # stored, nothing said anywhere.
    other = slack.handle(view_submission(view, {"title": "x", "urgency": "low"}, user="U0666"))
    forged = dict(view, private_metadata=view["private_metadata"].replace("C0001", "C0666"))
    moved = slack.handle(view_submission(forged, {"title": "x", "urgency": "low"}))
    assert other["statusCode"] == 400 and moved["statusCode"] == 400
    assert not world.calls("/api/chat.post") and not world.deferrer.jobs

    blank = ok(slack.handle(view_submission(view, {"title": "  ", "urgency": "low"})))
    assert json.loads(blank["body"]) == {
        "response_action": "errors",
        "errors": {"title": "A ticket needs a title."},
    }  # the modal stays open; nothing said, nothing filed
    assert not world.calls("/api/chat.post") and not world.deferrer.jobs

    values = {"title": "Printer on fire", "details": "smoke", "urgency": "high"}
    assert ok(slack.handle(view_submission(view, values)))["body"] == ""  # the modal closes
    [filing] = world.calls("/api/chat.postEphemeral")
    assert filing.body["text"] == "Filing “Printer on fire” (high)…"
    assert filing.body["channel"] == "C0001" and filing.body["user"] == "U0001"
    assert not world.calls("/tickets")  # slow: handed off, the ack did not wait for it

    [job] = world.deferrer.jobs
    world.deferrer.jobs.append(dict(job))  # Lambda may deliver an async invoke twice
    ran = world.deferrer.drain(slack.run_deferred)
    assert [j["kind"] for j in ran] == ["effect", "effect"]
    [ticket] = world.calls("/tickets")  # at most once per event
    assert ticket.body["title"] == "Printer on fire" and ticket.body["reporter"] == "slack:U0001"
    assert ticket.headers["Idempotency-Key"] == job["effect_key"]
    said = world.slack_texts("/api/chat.postEphemeral")
    assert said == [
        "Filing “Printer on fire” (high)…",
        "Filed TK-1: “Printer on fire”. We'll be in touch.",
    ]
    conversation = world.sessions.get(stored_key(SLACK_KEY, Intake()))
    assert conversation is not None
    assert conversation.state["tickets"] == [{"id": "TK-1", "title": "Printer on fire"}]
    assert conversation.state["filing"] == 0

    # The follow-up is an event like any other: replaying the effect job changes nothing.
    world.deferrer.drain(slack.run_deferred)
    slack.run_deferred(job)
    assert len(world.calls("/tickets")) == 1 and len(said) == 2


def test_intake_on_messenger_quick_replies_effect_and_follow_up(world: World) -> None:
    _, messenger = world.edges(Intake())
    for line in ("ticket", "Disk full", "The disk is full"):
        ok(messenger.handle(post(single(text(line)))))
    asked = world.graph()[-1]
    assert asked["text"] == "How urgent is it?"
    assert [q["title"] for q in asked["quick_replies"]] == ["Low", "Normal", "High"]
    tapped = text("High", quick_reply=encode_payload("intake:urgency", "high"), mid="m_urgent")
    ok(messenger.handle(post(single(tapped))))
    ok(messenger.handle(post(single(tapped))))  # Meta redelivers: a duplicate
    assert len(world.deferrer.jobs) == 1
    world.deferrer.drain(messenger.run_deferred)
    texts = [m.get("text") for m in world.graph()]
    assert texts[-2:] == [
        "Filing “Disk full” (high)…",
        "Filed TK-1: “Disk full”. We'll be in touch.",
    ]
    [ticket] = world.calls("/tickets")
    assert ticket.body == {"title": "Disk full", "details": "The disk is full",
                           "urgency": "high", "reporter": "messenger:5550001"}  # fmt: skip


# -- bots we did not write -----------------------------------------------------------------------


class Weather:
    """Not a ``bot.Bot`` subclass: it declares what it handles, and a fast effect."""

    commands: ClassVar[tuple[str, ...]] = ("/weather",)
    action_prefix: ClassVar[str] = "wx:"

    def __init__(self) -> None:
        self.seen: list[Message] = []
        self.lookups: list[str] = []

    def turn(self, state: Any, message: Message) -> Any:
        self.seen.append(message)
        if message.kind == "effect":
            return {"last": message.result}, [f"It is {message.result}."]
        city = message.value or message.text or "Paris"
        return Outcome(state, [f"Looking up {city}…"], [Effect("lookup", {"city": city})])

    @effect("lookup")
    def lookup(self, args: Any, call: EffectCall) -> str:
        self.lookups.append(call.key)
        return f"sunny ({args['city']})"


def test_a_bot_we_did_not_write_is_routed_and_its_fast_effect_follows_up(world: World) -> None:
    bot = Weather()
    slack, messenger = world.edges(bot)
    command = slash("Lyon", command="/weather", response_url=world.fake.response_url("w"))
    ack = json.loads(ok(slack.handle(command))["body"])
    assert ack["text"] == "Looking up Lyon…"
    # A fast effect runs right after the commit, and its follow-up answers via response_url.
    assert [m.kind for m in bot.seen] == ["command", "effect"]
    assert bot.seen[0].command == "/weather" and bot.seen[0].text == "Lyon"
    assert bot.seen[0].platform == "slack" and bot.seen[0].user == "U0001"
    assert "token" not in bot.seen[0].raw  # the legacy token never reaches the bot
    assert bot.seen[1].result == "sunny (Lyon)"
    assert world.fake.responses()[-1].body["text"] == "It is sunny (Lyon)."
    assert world.sessions.get(stored_key(SLACK_KEY, bot)).state == {"last": "sunny (Lyon)"}  # type: ignore[union-attr]

    # An undeclared command or action never reaches the bot, and is not a 404.
    before = len(bot.seen)
    undeclared = ok(slack.handle(slash("add milk", command="/todo")))
    assert "don't know /todo" in json.loads(undeclared["body"])["text"]
    ok(slack.handle(block_action("1", action_id="todo_done")))
    ok(slack.handle(block_action("Nice", action_id="wx:refresh",
                                 response_url=world.fake.response_url("wx"))))  # fmt: skip
    assert [m.action for m in bot.seen[before:]] == ["wx:refresh", "lookup"]

    ok(messenger.handle(post(single(text("Oslo")))))
    assert world.graph()[-1]["text"] == "It is sunny (Oslo)."
    assert len(bot.lookups) == 3 and len(set(bot.lookups)) == 3


class Malformed(Bot[dict[str, Any]]):
    commands: ClassVar[tuple[str, ...]] = ("/bad",)

    def turn(self, state: dict[str, Any], message: Message) -> Any:
        if message.text == "kind":
            return state, [{"kind": "carousel", "items": []}]
        return "hello"  # a str, not an outcome


@pytest.mark.parametrize("how", ["hello", "kind"])
def test_a_malformed_turn_is_a_clear_dead_letter_not_a_5xx_loop(world: World, how: str) -> None:
    slack, messenger = world.edges(Malformed())
    event = dm_body("hello" if how == "hello" else "kind")
    ok(slack.handle(json_event(event)))
    ok(slack.handle(json_event(event, retry=1)))  # the redelivery: a duplicate, no apology
    [apology] = world.fake.posts()
    assert apology.body["text"].startswith("Sorry, something went wrong")
    user = ConversationKey.slack(team="T0001", channel="D0001", user="U0001").user_key
    [(_, letter)] = world.sessions.dead_letters(user)
    expected = (
        "turn returned str 'hello'; expected Outcome(state, replies, effects)"
        if how == "hello"
        else "reply of unknown kind dict {'kind': 'carousel', 'items': []}"
    )
    assert letter.error is not None and "BotTypeError" in letter.error and expected in letter.error

    ok(messenger.handle(post(single(text(how)))))
    assert world.graph()[-1]["text"].startswith("Sorry, something went wrong")
    [(_, letter)] = world.sessions.dead_letters(MESSENGER_KEY.user_key)
    assert expected in str(letter.error)


def test_session_options_come_from_the_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONS_IDLE_TTL", "3600")
    monkeypatch.setenv("SESSIONS_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("SESSIONS_SENT_MARK", "true")
    edge = handlers.slack.build(from_env(), bot=Quiz())
    assert (edge.sessions.idle_ttl, edge.sessions.max_attempts) == (3600, 3)
    assert edge.sessions.sent_mark is True
    edge.sessions.store.close()
    assert new_conversation() is None


def test_a_state_newer_than_the_code_is_refused_and_kept(world: World) -> None:
    slack, _ = world.edges(Quiz())
    dm = stored_key(ConversationKey.slack(team="T0001", channel="D0001", user="U0001"), Quiz())
    newer = {"__schema__": 3, "state": {"shape": "from the future"}}
    world.sessions.run(dm, "seed", lambda s, e: (newer, [], None), None)
    ok(slack.handle(json_event(dm_body("score"))))
    assert world.fake.posts()[-1].body["text"].startswith("Sorry, something went wrong")
    [(_, letter)] = world.sessions.dead_letters(dm.user_key)
    assert "StateVersionError" in str(letter.error) and "schema 3" in str(letter.error)
    stored = world.sessions.get(dm)
    assert stored is not None and stored.state == newer and stored.version == 1


def test_an_effect_that_fails_comes_back_as_an_error_once(world: World) -> None:
    _, messenger = world.edges(Intake())
    world.fake.failures["/tickets"] = [503]
    for line in ("ticket", "VPN down", "since 9am"):
        ok(messenger.handle(post(single(text(line)))))
    ok(
        messenger.handle(
            post(single(text("Low", quick_reply=encode_payload("intake:urgency", "low"))))
        )
    )
    [job] = world.deferrer.jobs
    world.deferrer.drain(messenger.run_deferred)
    messenger.run_deferred(job)  # a retried job: the claim holds, nothing runs again
    said = world.graph()[-1]["text"]
    assert said.startswith("I could not file it (HTTPError: 503")
    assert not world.calls("/tickets")  # the failed call was never recorded as filed
    conversation = world.sessions.get(stored_key(MESSENGER_KEY, Intake()))
    assert conversation is not None and conversation.state["filing"] == 0
    assert [m.get("text") for m in world.graph()].count(said) == 1


class CrashOnFirstHandOff(QueueDeferrer):
    def __init__(self) -> None:
        super().__init__()
        self.crashed = False

    def submit(self, job: dict[str, Any]) -> None:
        if not self.crashed:
            self.crashed = True
            raise Crash
        super().submit(job)


def test_sent_mark_mode_starts_effects_lost_in_a_crash_once(world: World) -> None:
    """In sent-mark mode the effects travel with the outbox: a delivery that dies after the
    commit, before its slow effect was handed off, is redelivered, and the effect still runs,
    once (its claim stops the outbox's later resends from running it again)."""
    sessions = Sessions(world.store, sent_mark=True, resend_after=0)
    deferrer = CrashOnFirstHandOff()
    messenger = handlers.messenger.build(
        from_env(), sessions=sessions, bot=Intake(), deferrer=deferrer
    )
    for line in ("ticket", "Printer jam", "paper everywhere"):
        ok(messenger.handle(post(single(text(line)))))
    tapped = text("High", quick_reply=encode_payload("intake:urgency", "high"), mid="m_crash")
    with pytest.raises(Crash):
        messenger.handle(post(single(tapped)))  # committed and said "Filing…", then died
    assert not deferrer.jobs
    ok(messenger.handle(post(single(tapped))))  # Meta redelivers: the outbox goes out again
    assert len(deferrer.jobs) == 1
    ok(messenger.handle(post(single(tapped))))  # marked sent by now: nothing again
    world.deferrer.jobs.extend(deferrer.jobs)
    world.deferrer.jobs.extend(deferrer.jobs)  # and Lambda delivers the job twice
    world.deferrer.drain(messenger.run_deferred)
    assert len(world.calls("/tickets")) == 1
    texts = [m.get("text") for m in world.graph()]
    assert texts.count("Filed TK-1: “Printer jam”. We'll be in touch.") == 1


class Blocky(Bot[dict[str, Any]]):
    actions: ClassVar[tuple[str, ...]] = ("press",)

    def turn(self, state: dict[str, Any], message: Message) -> Any:
        return state, [Reply("the plain version", blocks=[{"type": "not-a-block"}])]


def test_blocks_slack_refuses_fall_back_to_the_text(world: World) -> None:
    slack, _ = world.edges(Blocky())
    refused = (200, {"ok": False, "error": "invalid_blocks"})
    world.fake.failures["/api/chat.postMessage"] = [refused]
    ok(slack.handle(json_event(dm_body("hi"))))
    [posted] = world.fake.posts()  # the refused request posted nothing
    assert posted.body["text"] == "the plain version" and "blocks" not in posted.body
    world.fake.failures["/response/"] = [(400, {"error": "invalid_blocks"})]
    url = world.fake.response_url("b")
    ok(slack.handle(block_action("1", action_id="press", response_url=url)))
    [answered] = world.fake.responses()
    assert answered.body["text"] == "the plain version" and "blocks" not in answered.body
