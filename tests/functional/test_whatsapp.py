"""``handlers.whatsapp.handler`` with really signed webhooks in Meta's documented shapes, a fake
Graph API (a real HTTP server), SQLite and DynamoDB Local."""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import handlers.whatsapp
from bot import WINDOW_CLOSED, Bot, Message, Outcome, Reply, Template
from bot.timers import Timer
from handlers.pipeline.timers import TimerLoop, next_time
from handlers.tools import admin
from handlers.whatsapp.config import RECORD_TTL
from sessions import ConversationKey, Sessions
from sessions.schedules import SQLiteScheduler
from sessions.sqlite import SQLiteStore
from sessions.store import Store
from tests.fakes import FakeSlack, QueueDeferrer, fake_slack
from tests.functional.conftest import select_store
from tests.keys import stored
from tests.whatsapp_requests import (
    APP_SECRET,
    BSUID,
    NUMBER,
    TOKEN,
    USER,
    VERIFY_TOKEN,
    button_reply,
    image,
    list_reply,
    location,
    post,
    raw_of,
    signed,
    single,
    status,
    text,
    value,
    verify,
    wamid,
    webhook,
)

SEND_PATH = f"/v25.0/{NUMBER}/messages"


@dataclass
class WhatsAppWorld:
    fake: FakeSlack
    store: Store
    sessions: Sessions

    def call(self, event: dict[str, Any]) -> dict[str, Any]:
        return handlers.whatsapp.handler(event, None)

    def items(self, user: str = USER) -> list[str]:
        key = ConversationKey("whatsapp", NUMBER, NUMBER, user)
        conversation = self.sessions.get(stored(key))
        return [] if conversation is None else [i["text"] for i in conversation.state["items"]]

    def sent(self, user: str | None = None) -> list[dict[str, Any]]:
        return [c.body for c in self.fake.whatsapp_sends() if user is None or c.body["to"] == user]

    def texts(self, user: str | None = None) -> list[str]:
        out = []
        for body in self.sent(user):
            if body["type"] == "text":
                out.append(body["text"]["body"])
            elif body["type"] == "interactive":
                out.append(body["interactive"]["body"]["text"])
        return out


def env(monkeypatch: pytest.MonkeyPatch, fake: FakeSlack) -> None:
    monkeypatch.setenv("WHATSAPP_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN)
    monkeypatch.setenv("WHATSAPP_TOKEN", TOKEN)
    monkeypatch.setenv("WHATSAPP_API_URL", fake.graph_url)


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def whatsapp(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[WhatsAppWorld]:
    with fake_slack() as fake:
        env(monkeypatch, fake)
        store = select_store(request, monkeypatch, tmp_path)
        handlers.whatsapp.reset()
        yield WhatsAppWorld(fake=fake, store=store, sessions=Sessions(store))
        handlers.whatsapp.reset()
        store.close()


def ok(result: dict[str, Any]) -> None:
    assert result["statusCode"] == 200, result


def test_verification_handshake(whatsapp: WhatsAppWorld) -> None:
    good = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    result = whatsapp.call(verify(good))
    assert result["statusCode"] == 200 and result["body"] == "1158201444"
    assert whatsapp.call(verify({**good, "hub.verify_token": "nope"}))["statusCode"] == 403
    assert whatsapp.call(verify({**good, "hub.mode": "unsubscribe"}))["statusCode"] == 403
    assert whatsapp.call(verify({"hub.challenge": "x"}))["statusCode"] == 403


def test_the_todo_bot_unchanged_and_a_button_reply_reaching_the_action(
    whatsapp: WhatsAppWorld,
) -> None:
    ok(whatsapp.call(post(single(text("add milk")))))
    ok(whatsapp.call(post(single(text("add eggs")))))
    ok(whatsapp.call(post(single(text("list")))))
    listed = whatsapp.sent()[-1]
    assert listed["messaging_product"] == "whatsapp" and listed["to"] == USER
    assert listed["recipient_type"] == "individual"
    interactive = listed["interactive"]
    assert interactive["type"] == "button"
    assert interactive["body"]["text"] == "Your list:\n1. milk\n2. eggs"
    buttons = [b["reply"] for b in interactive["action"]["buttons"]]
    assert [b["title"] for b in buttons] == ["Done 1", "Done 2"]
    ok(whatsapp.call(post(single(button_reply(buttons[0]["id"], buttons[0]["title"])))))
    assert whatsapp.texts()[-1] == "Done: “milk”. 1 left."
    assert whatsapp.items() == ["eggs"]
    call = whatsapp.fake.whatsapp_sends()[0]
    assert call.path == SEND_PATH
    assert call.headers.get("authorization") == f"Bearer {TOKEN}"


def test_more_than_three_buttons_are_a_list_and_its_row_reaches_the_action(
    whatsapp: WhatsAppWorld,
) -> None:
    for item in ("a", "b", "c", "d"):
        ok(whatsapp.call(post(single(text(f"add {item}")))))
    ok(whatsapp.call(post(single(text("list")))))
    listed = whatsapp.sent()[-1]["interactive"]
    assert listed["type"] == "list"
    rows = listed["action"]["sections"][0]["rows"]
    assert [r["title"] for r in rows] == ["Done 1", "Done 2", "Done 3", "Done 4"]
    ok(whatsapp.call(post(single(list_reply(rows[2]["id"], rows[2]["title"])))))
    assert whatsapp.items() == ["a", "b", "d"]


def test_a_message_delivered_three_times_at_once_is_applied_and_answered_once(
    whatsapp: WhatsAppWorld,
) -> None:
    raw = raw_of(single(text("add bread", mid=wamid())))
    event = post(raw)
    start = threading.Barrier(3)
    results: list[dict[str, Any]] = []

    def deliver() -> None:
        start.wait()
        results.append(whatsapp.call(event))

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r["statusCode"] for r in results] == [200, 200, 200]
    assert whatsapp.items() == ["bread"]
    assert whatsapp.texts() == ["Added “bread”. You have 1 item."]


def test_a_batch_of_two_messages_and_a_status(whatsapp: WhatsAppWorld) -> None:
    ours = wamid()
    data = webhook(value(text("add tea"), text("add jam")), value(statuses=(status(ours, "read"),)))
    ok(whatsapp.call(post(data)))
    assert whatsapp.items() == ["tea", "jam"]
    assert len(whatsapp.texts()) == 2  # the status ran no turn
    ok(whatsapp.call(post(webhook(value(statuses=(status(ours, "delivered"),))))))
    assert len(whatsapp.sent()) == 2


def test_a_bad_signature_is_refused_and_nothing_runs(whatsapp: WhatsAppWorld) -> None:
    raw = raw_of(single(text("add secret")))
    assert whatsapp.call(post(raw, secret="not-the-app-secret"))["statusCode"] == 403
    headers = signed(raw)
    headers.pop("x-hub-signature-256")
    assert whatsapp.call(post(raw, headers=headers))["statusCode"] == 401
    tampered = raw.replace(b"add secret", b"add secreT")
    assert whatsapp.call(post(tampered, headers=signed(raw)))["statusCode"] == 403
    assert whatsapp.items() == [] and whatsapp.sent() == []


def test_a_bsuid_user_is_kept_apart_from_a_digits_user(whatsapp: WhatsAppWorld) -> None:
    ok(whatsapp.call(post(single(text("add for the number")))))
    ok(whatsapp.call(post(single(text("add for the bsuid", user=BSUID)))))
    assert whatsapp.items() == ["for the number"]
    assert whatsapp.items(BSUID) == ["for the bsuid"]
    assert [b["to"] for b in whatsapp.sent()] == [USER, BSUID]
    partition = ConversationKey("whatsapp", NUMBER, NUMBER, BSUID).user_key
    assert partition.pk == f"whatsapp#{NUMBER}#{BSUID}"
    assert whatsapp.store.user_items(partition)  # its own partition, the id as sent


def test_media_location_and_unread_kinds(whatsapp: WhatsAppWorld) -> None:
    ok(whatsapp.call(post(single(image("add a photo of milk")))))
    assert whatsapp.items() == ["a photo of milk"]
    reaction = {"from": USER, "id": wamid(), "timestamp": str(int(time.time())),
                "type": "reaction", "reaction": {"message_id": wamid(), "emoji": "👍"}}  # fmt: skip
    ok(whatsapp.call(post(single(reaction, location()))))
    assert len(whatsapp.texts()) == 2  # the location ran a turn (help), the reaction none


class Window(Bot[dict]):
    """Answers text with text; told its replies met the closed window, with a template."""

    def turn(self, state: dict, message: Message) -> Outcome[dict]:
        if message.kind == "effect" and message.action == WINDOW_CLOSED:
            unsent = message.payload["unsent"] if isinstance(message.payload, Mapping) else ()
            seen = {"error": message.error, "unsent": [r["text"] for r in unsent]}
            return Outcome({**state, "told": seen}, [Template("reminder", "en_US", ["milk"])])
        return Outcome(state, [Reply(f"echo {message.text}")])


def test_a_reply_outside_the_window_comes_back_as_an_error_follow_up_and_a_template_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SESSIONS_DB", str(tmp_path / "s.sqlite3"))
    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    with fake_slack() as fake:
        env(monkeypatch, fake)
        queue = QueueDeferrer()
        edge = handlers.whatsapp.build(bot=Window(), deferrer=queue)
        window = {"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException",
                            "code": 131047, "error_subcode": 2494010,
                            "error_data": {"messaging_product": "whatsapp",
                                           "details": "Message failed to send because more than "
                                           "24 hours have passed since the customer last "
                                           "replied to this number."}}}  # fmt: skip
        fake.failures[SEND_PATH] = [(400, window)]
        old = str(int(time.time()) - 25 * 3600)  # a redelivery from yesterday, say
        ok(edge.handle(post(single(text("hello", timestamp=old)))))
        assert fake.whatsapp_sends() == []  # refused: nothing delivered
        assert len(queue.jobs) == 1
        queue.drain(edge.run_deferred)
        sent = [c.body for c in fake.whatsapp_sends()]
        assert sent == [{
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": USER,
            "type": "template",
            "template": {"name": "reminder", "language": {"code": "en_US"},
                         "components": [{"type": "body",
                                         "parameters": [{"type": "text", "text": "milk"}]}]},
        }]  # fmt: skip
        key = stored(ConversationKey("whatsapp", NUMBER, NUMBER, USER), Window())
        told = edge.sessions.get(key).state["told"]  # type: ignore[union-attr]
        assert told["error"].startswith("OutsideWindow:") and "24 hours" in told["error"]
        assert told["unsent"] == ["echo hello"]


def test_the_window_follow_up_is_applied_once_when_its_job_runs_twice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SESSIONS_DB", str(tmp_path / "s.sqlite3"))
    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    with fake_slack() as fake:
        env(monkeypatch, fake)
        queue = QueueDeferrer()
        edge = handlers.whatsapp.build(bot=Window(), deferrer=queue)
        fake.failures[SEND_PATH] = [(400, {"error": {"code": 131047}})]
        ok(edge.handle(post(single(text("hello")))))
        job = queue.jobs[0]
        edge.run_deferred(job)
        edge.run_deferred(job)
        assert [c.body["type"] for c in fake.whatsapp_sends()] == ["template"]


def test_a_failed_status_is_logged_by_hash_and_counted(
    whatsapp: WhatsAppWorld, caplog: pytest.LogCaptureFixture
) -> None:
    ours = "wamid.CANARY" + "7" * 20
    caplog.set_level(logging.INFO)
    data = webhook(value(statuses=(status(ours, "failed", code=131047), status(ours, "sent"))))
    ok(whatsapp.call(post(data)))
    edge = handlers.whatsapp.handler._edge
    assert edge is not None and edge.failed_statuses == 1
    lines = [r for r in caplog.records if r.getMessage() == "a reply we sent failed"]
    assert len(lines) == 1 and lines[0].codes == [131047]  # type: ignore[attr-defined]
    assert "CANARY" not in caplog.text and USER not in caplog.text


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("store_kind", ["sqlite", "dynamodb_local"])
def test_a_redelivery_six_days_later_is_still_a_duplicate(
    store_kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    request.param = store_kind  # type: ignore[attr-defined]
    with fake_slack() as fake:
        env(monkeypatch, fake)
        store = select_store(request, monkeypatch, tmp_path)
        clock = Clock()
        sessions = Sessions(store, clock=clock)  # the other platforms' default: a day
        edge = handlers.whatsapp.build(sessions=sessions)
        assert edge.sessions.event_ttl == RECORD_TTL and sessions.event_ttl == 86_400
        event = post(single(text("add once", timestamp=str(int(clock.now)))))
        ok(edge.handle(event))
        clock.now += 6 * 86_400 + 3600  # Meta's backoff, six days on
        ok(edge.handle(event))
        assert len(fake.whatsapp_sends()) == 1
        assert [i["text"] for i in sessions.get(
            stored(ConversationKey("whatsapp", NUMBER, NUMBER, USER))).state["items"]] == ["once"]  # type: ignore[union-attr]  # fmt: skip
        store.close()


class Echo:
    def turn(self, state: Any, message: Message) -> Any:
        n = (state or {}).get("n", 0) + 1
        return {"n": n}, [f"{message.platform} {message.workspace} #{n}: {message.text}"]


def add_number(number: str, token: str) -> None:
    assert admin.main(["add-page", number, "--whatsapp"], stdin=io.StringIO(token + "\n")) == 0


@pytest.mark.parametrize("store_kind", ["sqlite", "dynamodb_local"])
def test_each_number_is_answered_with_its_own_token(
    store_kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    request.param = store_kind  # type: ignore[attr-defined]
    with fake_slack() as fake:
        env(monkeypatch, fake)
        monkeypatch.delenv("WHATSAPP_TOKEN")  # many numbers: no token for all
        store = select_store(request, monkeypatch, tmp_path)
        handlers.whatsapp.build(sessions=Sessions(store), bot=Echo())  # the SQLite file exists
        add_number(NUMBER, "token-of-the-number")
        edge = handlers.whatsapp.build(sessions=Sessions(store), bot=Echo())
        ok(edge.handle(post(single(text("hi")))))
        assert [(c.headers["authorization"], c.body["text"]["body"])
                for c in fake.whatsapp_sends()] == [
            ("Bearer token-of-the-number", f"whatsapp {NUMBER} #1: hi")]  # fmt: skip
        other = "106540352242999"
        ok(edge.handle(post(single(text("anyone?"), number=other))))
        assert any("no access token" in r.getMessage() for r in caplog.records)
        assert other not in caplog.text and USER not in caplog.text
        assert len(fake.whatsapp_sends()) == 1
        lost = stored(ConversationKey("whatsapp", other, other, USER), Echo())
        assert Sessions(store).get(lost) is None
        assert admin.main(["remove-page", NUMBER, "--whatsapp"]) == 0
        assert handlers.whatsapp.build(sessions=Sessions(store)).tokens.token(NUMBER) is None
        store.close()


def test_a_deleted_users_message_redelivered_three_days_later_stays_deleted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SESSIONS_DB", str(tmp_path / "s.sqlite3"))
    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    with fake_slack() as fake:
        env(monkeypatch, fake)
        clock = Clock()
        edge = handlers.whatsapp.build(sessions=Sessions(SQLiteStore(str(tmp_path / "s.sqlite3")),
                                                         clock=clock))  # fmt: skip
        event = post(single(text("add my secret", timestamp=str(int(clock.now) - 1))))
        ok(edge.handle(event))
        pk = f"whatsapp#{NUMBER}#{USER}"
        assert admin.main(["delete", pk, "--yes"], stdin=io.StringIO("")) == 0
        clock.now += 3 * 86_400  # Meta still redelivers it
        ok(edge.handle(event))
        partition = ConversationKey("whatsapp", NUMBER, NUMBER, USER).user_key
        assert [sk for sk, _ in edge.sessions.store.user_items(partition)
                if sk != "#tombstone"] == []  # fmt: skip


def test_a_reminder_fires_in_the_whatsapp_function_and_reaches_its_user(
    whatsapp: WhatsAppWorld,
) -> None:
    for words in ("add call mum", "remind me about 1 in 90 seconds"):
        ok(whatsapp.call(post(single(text(words, user=BSUID)))))
    scheduler = SQLiteScheduler(os.environ["SESSIONS_TIMERS_DB"], next_time=next_time)
    try:
        (pending,) = scheduler.pending()
        assert pending.target == "whatsapp"  # the function EventBridge Scheduler invokes
        fired = TimerLoop(scheduler, lambda target, payload: whatsapp.call(payload))
        assert fired.fire_due(pending.at + 1) == 1
    finally:
        scheduler.close()
    assert whatsapp.texts(BSUID)[-1] == "⏰ Reminder: “call mum”"


class Remind(Bot[dict]):
    """Sets a reminder a day and more ahead; told the window closed, sends the template."""

    def turn(self, state: dict, message: Message) -> Outcome[dict]:
        if message.kind == "timer":
            return Outcome(state, [Reply("⏰ call mum")])
        if message.kind == "effect" and message.action == WINDOW_CLOSED:
            return Outcome({"told": state.get("told", 0) + 1}, [Template("reminder", "en_US",
                                                                        ["call mum"])])  # fmt: skip
        return Outcome(state, ["OK"], [Timer("mum", after=25 * 3600)])


def test_a_timer_past_the_window_comes_back_to_the_bot_once_and_its_template_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SESSIONS_DB", str(tmp_path / "s.sqlite3"))
    monkeypatch.setenv("SESSIONS_TIMERS_DB", str(tmp_path / "t.sqlite3"))
    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    with fake_slack() as fake:
        env(monkeypatch, fake)
        queue = QueueDeferrer()
        edge = handlers.whatsapp.build(bot=Remind(), deferrer=queue)
        ok(edge.handle(post(single(text("remind me")))))
        scheduler = edge.sessions.scheduler
        assert isinstance(scheduler, SQLiteScheduler)
        (pending,) = scheduler.pending()
        fake.failures[SEND_PATH] = [(400, {"error": {"code": 131047}})]
        fires = TimerLoop(scheduler, lambda target, payload: edge.handle(payload))
        assert fires.fire_due(pending.at + 1) == 1
        (job,) = queue.jobs
        edge.run_deferred(job)
        edge.run_deferred(job)  # Lambda's async retry: the follow-up is applied once
        sent = [c.body["type"] for c in fake.whatsapp_sends()]
        assert sent == ["text", "template"]  # "OK", then the template (the reminder refused)
        key = stored(ConversationKey("whatsapp", NUMBER, NUMBER, USER), Remind())
        assert edge.sessions.get(key).state["told"] == 1  # type: ignore[union-attr]


def test_a_serialised_whatsapp_turn_runs_in_the_whatsapp_edge(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The serial queue's consumer (one Lambda for every platform's busy turns) hands a
    WhatsApp job to the WhatsApp edge, and an Instagram one to the Messenger edge (fails
    without the consumer's platform map: Instagram went to the Slack edge)."""
    from handlers.pipeline.delivery import dump
    from handlers.serial import Consumer
    from handlers.whatsapp.edge import delivery_of
    from handlers.whatsapp.parse import parse_batch

    monkeypatch.setenv("SESSIONS_DB", str(tmp_path / "s.sqlite3"))
    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    with fake_slack() as fake:
        env(monkeypatch, fake)
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        (incoming,) = parse_batch(single(text("add from the queue"))).messages
        consumer = Consumer()
        consumer.run(dump(delivery_of(incoming)))
        assert [c.body["text"]["body"] for c in fake.whatsapp_sends()] == [
            "Added “from the queue”. You have 1 item."]  # fmt: skip
        assert set(consumer._edges) == {"whatsapp"}
        # An Instagram job: the Messenger edge serves Instagram (it went to Slack's before).
        from handlers.messenger import delivery_of as messenger_delivery
        from handlers.messenger.parse import parse_batch as messenger_batch
        from tests import messenger_requests as mr

        account = "178000000000001"
        Sessions(SQLiteStore(str(tmp_path / "s.sqlite3"))).installations.put(
            "instagram-account", account, {"token": "token-of-the-account"})  # fmt: skip
        data = {**mr.single(mr.text("add from instagram", page=account), page=account),
                "object": "instagram"}  # fmt: skip
        (message,) = messenger_batch(data)
        consumer.run(dump(messenger_delivery(message)))
        assert [c.body["message"]["text"] for c in fake.sends()] == [
            "Added “from instagram”. You have 1 item."]  # fmt: skip
        assert set(consumer._edges) == {"whatsapp", "messenger"}
