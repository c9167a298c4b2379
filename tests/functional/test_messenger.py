"""``handlers.messenger.handler`` with really signed webhooks, a fake Graph API, SQLite and
DynamoDB Local."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

import handlers.messenger
from handlers.messenger.parse import encode_payload
from handlers.settings import from_env
from sessions import Sessions
from sessions.dynamodb import DynamoDBStore
from tests.functional.conftest import MessengerWorld
from tests.functional.test_slack_deferred import SlowTodo, flaky
from tests.integration.test_request_budget import RequestCounter
from tests.messenger_requests import (
    PAGE,
    USER,
    VERIFY_TOKEN,
    batch,
    post,
    postback,
    signed,
    single,
    text,
    verify,
)


def ok(result: dict[str, Any]) -> None:
    assert result["statusCode"] == 200, result


def test_verification_handshake(messenger: MessengerWorld) -> None:
    good = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    result = messenger.call(verify(good))
    assert result["statusCode"] == 200 and result["body"] == "1158201444"
    assert messenger.call(verify({**good, "hub.verify_token": "nope"}))["statusCode"] == 403
    assert messenger.call(verify({**good, "hub.mode": "unsubscribe"}))["statusCode"] == 403
    assert messenger.call(verify({"hub.challenge": "x"}))["statusCode"] == 403


def test_add_list_done_and_the_prompt(messenger: MessengerWorld) -> None:
    ok(messenger.call(post(single(text("add milk")))))
    ok(messenger.call(post(single(text("add")))))
    ok(messenger.call(post(single(text("eggs, a dozen")))))
    ok(messenger.call(post(single(text("list")))))
    texts = messenger.texts()
    assert texts[0].startswith("Added “milk”")
    assert texts[1] == "What should I add?"
    assert texts[2].startswith("Added “eggs, a dozen”")
    assert texts[3] == "Your list:\n1. milk\n2. eggs, a dozen"
    listed = messenger.fake.sends()[-1].body
    assert listed["messaging_type"] == "RESPONSE" and listed["recipient"] == {"id": USER}
    quick = listed["message"]["quick_replies"]
    assert [q["title"] for q in quick] == ["Done 1", "Done 2"]
    ok(messenger.call(post(single(text("Done 1", quick_reply=quick[0]["payload"])))))
    assert messenger.texts()[-1] == "Done: “milk”. 1 left."
    ok(messenger.call(post(single(text("done 1")))))
    assert messenger.items() == []
    call = messenger.fake.sends()[0]
    assert "access_token=page-token-test" in call.path


def test_postback_drives_the_bot(messenger: MessengerWorld) -> None:
    ok(messenger.call(post(single(text("add a")))))
    ok(messenger.call(post(single(postback(encode_payload("todo_done", "1"))))))
    ok(messenger.call(post(single(postback("GET_STARTED")))))
    assert messenger.texts()[1] == "Done: “a”. 0 left."
    assert "todo list" in messenger.texts()[2]  # unknown words: help


def test_batch_of_three_entries_with_two_messages_each(messenger: MessengerWorld) -> None:
    users = ["5550001", "5550002", "5550003"]
    base = int(time.time() * 1000)
    entries = []
    for n, psid in enumerate(users):
        # Out of order inside the batch: the later message comes first.
        entries.append(
            (PAGE, [text(f"add second {n}", psid=psid, timestamp=base + 10 + n),
                    text(f"add first {n}", psid=psid, timestamp=base + n)])
        )  # fmt: skip
    ok(messenger.call(post(batch(*entries))))
    for n, psid in enumerate(users):
        assert messenger.items(psid=psid) == [f"first {n}", f"second {n}"]
        assert len(messenger.texts(psid)) == 2
    assert len(messenger.fake.sends()) == 6


def test_repeated_mid_and_redelivered_batch_apply_once(messenger: MessengerWorld) -> None:
    once = text("add once", mid="m_repeated")
    body = single(once, dict(once))
    ok(messenger.call(post(body)))
    assert messenger.items() == ["once"] and len(messenger.fake.sends()) == 1
    ok(messenger.call(post(body)))  # Meta's redelivery of the whole batch
    assert messenger.items() == ["once"] and len(messenger.fake.sends()) == 1


def test_echoes_deliveries_and_reads_are_ignored(messenger: MessengerWorld) -> None:
    echo = text("add echoed", psid=PAGE)
    echo["message"]["is_echo"] = True
    echo["recipient"] = {"id": USER}
    delivery = {"sender": {"id": USER}, "recipient": {"id": PAGE}, "timestamp": 1,
                "delivery": {"mids": ["m_1"], "watermark": 1}}  # fmt: skip
    read = {"sender": {"id": USER}, "recipient": {"id": PAGE}, "timestamp": 2,
            "read": {"watermark": 1}}  # fmt: skip
    ok(messenger.call(post(single(echo, delivery, read))))
    assert messenger.stored() == [] and messenger.stored(psid=PAGE) == []
    assert messenger.fake.sends() == []


def _raw_signed(raw: bytes) -> dict[str, Any]:
    return post(raw, headers=signed(raw))


BAD = {
    "bad-signature": lambda: post(single(text("add x")), secret="wrong"),
    "sha1-only": lambda: post(
        b'{"object":"page","entry":[]}', headers={"x-hub-signature": "sha1=00"}
    ),
    "wrong-algorithm": lambda: post(b"{}", headers={"x-hub-signature-256": "md5=00"}),
    "unsigned": lambda: post(single(text("add x")), headers={}),
    "malformed-json": lambda: _raw_signed(b'{"object": "page", "entry": ['),
    "non-page-object": lambda: _raw_signed(json.dumps({"object": "user", "entry": []}).encode()),
    "entry-not-list": lambda: _raw_signed(b'{"object": "page", "entry": {}}'),
}
#: Signed batches whose one message is unreadable: refused alone, the batch answered 200.
BAD_MESSAGE = {
    "crafted-psid": lambda: _raw_signed(json.dumps(single(text("add x", psid="1#2"))).encode()),
    "long-psid": lambda: _raw_signed(json.dumps(single(text("add x", psid="1" * 500))).encode()),
    "no-timestamp": lambda: _raw_signed(
        json.dumps(single({**text("add x"), "timestamp": "soon"})).encode()
    ),
}


@pytest.mark.parametrize("build", BAD.values(), ids=BAD.keys())
def test_bad_requests_are_rejected_and_store_nothing(messenger: MessengerWorld, build: Any) -> None:
    result = messenger.call(build())
    assert result["statusCode"] in {400, 401, 403}, result
    assert messenger.stored() == []
    assert messenger.fake.sends() == []


@pytest.mark.parametrize("build", BAD_MESSAGE.values(), ids=BAD_MESSAGE.keys())
def test_an_unreadable_message_is_refused_alone(messenger: MessengerWorld, build: Any) -> None:
    result = messenger.call(build())
    assert result["statusCode"] == 200, result
    assert messenger.stored() == []
    assert messenger.fake.sends() == []


TRANSIENT = (500, {"error": {"message": "Please retry", "code": 2, "is_transient": True}})


def test_send_api_transient_500_and_429_are_retried(messenger: MessengerWorld) -> None:
    messenger.fake.failures["/v25.0/me/messages"] = [TRANSIENT, 429]
    ok(messenger.call(post(single(text("add retried")))))
    assert messenger.texts() == ["Added “retried”. You have 1 item."]


def test_send_api_failing_for_good_keeps_state_and_answers_200(messenger: MessengerWorld) -> None:
    messenger.fake.failures["/v25.0/me/messages"] = [TRANSIENT] * 3
    ok(messenger.call(post(single(text("add kept")))))
    assert messenger.items() == ["kept"] and messenger.fake.sends() == []


def test_send_api_500_that_may_have_been_processed_is_not_repeated(
    messenger: MessengerWorld,
) -> None:
    """A 5xx without a Graph error saying it is transient may follow a delivered message."""
    messenger.fake.failures["/v25.0/me/messages"] = [502, 502]
    ok(messenger.call(post(single(text("add once")))))
    assert messenger.items() == ["once"]
    assert messenger.fake.failures["/v25.0/me/messages"] == [502]  # tried exactly once


def test_send_api_read_timeout_is_not_retried() -> None:
    """The request arrived (the fake recorded it) and the answer was late: Meta may have sent
    the message, and the Send API has no idempotency key, so no second POST."""
    from handlers.messenger import SendAPI, SendError
    from tests.fakes import fake_slack

    with fake_slack() as fake:
        fake.delays["/v25.0/me/messages"] = [1.0]
        api = SendAPI(fake.graph_url, "token", timeout=(1.0, 0.2), sleep=lambda _: None)
        with pytest.raises(SendError, match="may have been delivered"):
            api.send(USER, {"text": "hello"})
        time.sleep(1.0)
        assert len(fake.sends()) == 1


def test_send_api_calls_are_bounded_by_the_webhooks_deadline() -> None:
    """Each attempt's timeouts are cut to the time left before the deadline, never below a
    second; nothing is retried past it; a send that starts late still gets its one attempt
    (skipping it would only lose the reply: the answer is late either way)."""
    import requests

    from handlers.messenger import MIN_SEND_TIMEOUT, SendAPI, SendError
    from tests.fakes import fake_slack

    class Recording(requests.Session):
        """The real HTTP session, noting the timeouts each call was given."""

        def __init__(self) -> None:
            super().__init__()
            self.timeouts: list[Any] = []

        def post(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            self.timeouts.append(kwargs["timeout"])
            return super().post(*args, **kwargs)

    with fake_slack() as fake:
        fake.delays["/v25.0/me/messages"] = [MIN_SEND_TIMEOUT + 1.0]
        http = Recording()
        api = SendAPI(fake.graph_url, "token", session=http, sleep=lambda _: None)
        with pytest.raises(SendError, match="may have been delivered"):
            api.send(USER, {"text": "slow"}, deadline=time.monotonic() + 0.3)
        assert http.timeouts == [(MIN_SEND_TIMEOUT, MIN_SEND_TIMEOUT)]  # configured (3.05, 5)

        api.send(USER, {"text": "late"}, deadline=time.monotonic() - 10)  # one attempt
        assert len(http.timeouts) == 2

        fake.failures["/v25.0/me/messages"] = [TRANSIENT, TRANSIENT]
        with pytest.raises(SendError, match="no retry past the deadline"):
            api.send(USER, {"text": "refused"}, deadline=time.monotonic() - 10)
        assert len(http.timeouts) == 3 and fake.failures["/v25.0/me/messages"] == [TRANSIENT]

        time.sleep(MIN_SEND_TIMEOUT + 1.0)
        assert [c.body["message"]["text"] for c in fake.sends()] == ["slow", "late"]


def test_send_api_connection_refused_is_retried() -> None:
    import socket

    from handlers.messenger import SendAPI, SendError

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slept: list[float] = []
    api = SendAPI(f"http://127.0.0.1:{port}/v25.0", "token", sleep=slept.append)
    with pytest.raises(SendError, match="failed 3 times"):
        api.send(USER, {"text": "hello"})
    assert len(slept) == 2


def test_long_replies_are_split_under_2000_characters(messenger: MessengerWorld) -> None:
    for i in range(8):
        ok(messenger.call(post(single(text(f"add {i} " + "x" * 480)))))
    ok(messenger.call(post(single(text("list")))))
    listing = [c.body["message"] for c in messenger.fake.sends()[8:]]
    assert len(listing) == 2 and all(len(m["text"]) < 2000 for m in listing)
    assert "\n".join(m["text"] for m in listing).count("xxxx\n") == 7  # every line, none cut
    assert "quick_replies" in listing[-1] and all("quick_replies" not in m for m in listing[:-1])
    for i in range(8, 20):
        ok(messenger.call(post(single(text(f"add {i}")))))
    ok(messenger.call(post(single(text("list")))))
    assert len(messenger.fake.sends()[-1].body["message"]["quick_replies"]) == 13


def test_error_before_commit_answers_5xx_and_redelivery_completes(
    messenger: MessengerWorld,
) -> None:
    edge = handlers.messenger.build(bot=SlowTodo(), sessions=flaky(messenger))
    body = single(text("add first", psid="5550001"), text("add second", psid="5550002"))
    assert edge.handle(post(body))["statusCode"] == 500
    ok(edge.handle(post(body)))
    assert messenger.items(psid="5550001") + messenger.items(psid="5550002") == ["first", "second"]
    assert len(messenger.fake.sends()) == 2  # the committed one was not re-sent


def test_slow_turn_is_deferred_and_answered_once(messenger: MessengerWorld) -> None:
    edge = handlers.messenger.build(bot=SlowTodo(delay=2.0))
    body = single(text("slow book flights"))
    started = time.monotonic()
    ok(edge.handle(post(body)))
    assert time.monotonic() - started < 1.5
    assert edge.deferrer.drain(timeout=30)  # type: ignore[attr-defined]
    assert messenger.texts() == ["Added “book flights”. You have 1 item."]


def test_dynamodb_requests_per_message(
    messenger: MessengerWorld, local_client: Any, local_table: str
) -> None:
    counter = RequestCounter(local_client)
    edge = handlers.messenger.MessengerEdge(
        settings=from_env(),
        sessions=Sessions(DynamoDBStore(local_table, client=local_client)),
        bot=SlowTodo(),
    )
    body = single(text("add a"), text("add b"))
    ok(edge.handle(post(body)))
    # 2 per message: the first creates the conversation (its commit checks the tombstone),
    # the second is a read and one conditional put; and, once per page per container (then
    # cached 5 minutes), the read of the page's own token.
    assert counter.take() == {"GetItem": 3, "TransactWriteItems": 1, "PutItem": 1}
    ok(edge.handle(post(body)))
    assert counter.take() == {"GetItem": 2}  # 1 per redelivered message (the token cached)


def test_messenger_path_never_imports_slack_bolt() -> None:
    code = (
        "import sys, handlers.messenger as m\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in {'slack_bolt', 'slack_sdk'})\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
