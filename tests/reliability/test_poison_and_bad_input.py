"""Poison events are recorded once and answered 200 (never a 5xx loop), bad input is 4xx
(never a 5xx or an escaped exception), and nothing on the ack path waits without bound.
Both edges, really signed requests, AWS's DynamoDB Local."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from bot import Message, Reply
from handlers.pipeline.deferral import LambdaDeferrer, make_lambda_client
from sessions import (
    BusyError,
    ConflictError,
    ConversationKey,
    Sessions,
    StoreUnavailableError,
)
from sessions.dynamodb import DynamoDBStore, make_client
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import FakeSlack, StoreWrapper
from tests.keys import stored
from tests.reliability.conftest import SpyBot, edges

pytestmark = pytest.mark.dynamodb_local

DM_KEY = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")


class PoisonBot(SpyBot):
    """The todo bot, except that any message mentioning "poison" raises (a bug in a bot)."""

    def turn(self, state: dict[str, Any], message: Message) -> tuple[Any, Sequence[Reply], Any]:
        if "poison" in message.text:
            with self.lock:
                self.turns.append(message)
            raise ValueError("bug in the bot")
        return super().turn(state, message)


def items(sessions: Sessions, key: ConversationKey) -> list[str]:
    conversation = sessions.get(stored(key))
    return [] if conversation is None else [i["text"] for i in conversation.state["items"]]


def test_poison_slack_event_is_dead_lettered_once_answered_200_and_replayable(
    fake: FakeSlack, ddb_store: DynamoDBStore
) -> None:
    sessions = Sessions(ddb_store)
    bot = PoisonBot()
    slack, _ = edges(fake, sessions, bot)
    body = sr.dm_body("add poison pill")
    assert slack.handle(sr.json_event(body))["statusCode"] == 200
    for retry in (1, 2, 3):  # Slack's retries, had we answered 5xx: each is a duplicate now
        assert slack.handle(sr.json_event(body, retry=retry))["statusCode"] == 200
    assert len(bot.turns) == 1
    [apology] = fake.posts()
    assert "Sorry" in apology.body["text"]
    [(_, letter)] = sessions.dead_letters(DM_KEY.user_key)
    assert letter.error == "TurnError: turn failed: ValueError: bug in the bot"

    # The operator fixes the bot and replays the dead letter (what `admin retry` does).
    fixed, _ = edges(fake, sessions, SpyBot())
    job = json.loads((letter.payload or b"j")[1:])["s"]
    fixed.run_deferred({**job, "retry_failed": True})
    assert items(sessions, DM_KEY) == ["poison pill"]
    assert sessions.dead_letters(DM_KEY.user_key) == []
    assert len(fake.posts()) == 2 and "poison pill" in fake.posts()[1].body["text"]


def test_poison_message_does_not_stop_the_messenger_batch(
    fake: FakeSlack, ddb_store: DynamoDBStore
) -> None:
    sessions = Sessions(ddb_store)
    _, messenger = edges(fake, sessions, PoisonBot())
    raw = json.dumps(
        mr.single(
            mr.text("add poison", psid="5550001"),
            mr.text("add after", psid="5550001"),
            mr.text("add theirs", psid="5550002"),
        )
    ).encode()
    assert messenger.handle(mr.post(raw))["statusCode"] == 200
    a = ConversationKey.messenger(page=mr.PAGE, psid="5550001")
    b = ConversationKey.messenger(page=mr.PAGE, psid="5550002")
    assert items(sessions, a) == ["after"] and items(sessions, b) == ["theirs"]
    texts = sorted(c.body["message"]["text"][:6] for c in fake.sends())
    assert texts == ["Added ", "Added ", "Sorry,"]
    assert len(sessions.dead_letters(a.user_key)) == 1
    # Meta's redelivery of the batch (had any part of it failed) changes and sends nothing.
    assert messenger.handle(mr.post(raw))["statusCode"] == 200
    assert len(fake.sends()) == 3


# -- bad input: 4xx, nothing stored, nothing sent -------------------------------------------------


def _slack_event(**changes: Any) -> dict[str, Any]:
    body = sr.dm_body("add x")
    for path, value in changes.items():
        target = body
        *parents, last = path.split("__")
        for name in parents:
            target = target[name]
        target[last] = value
    return sr.json_event(body)


def _block_action(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "team": {"id": "T0001"},
        "user": {"id": "U0001"},
        "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0001"},
        "channel": {"id": "C0001"},
        "trigger_id": "123.abc",
        "response_url": "http://127.0.0.1:9/response",
        "actions": [{"action_id": "todo_done", "value": "1", "action_ts": "1.2"}],
    }
    payload.update(changes)
    raw, headers = sr.form({"payload": json.dumps(payload)})
    return sr.http_v2(raw, headers)


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


SLACK_BAD = {
    "event-id-over-limit": lambda: _slack_event(event_id="Ev" + "A" * 2000),
    "event-id-dict": lambda: _slack_event(event_id={"id": "Ev1"}),
    "enterprise-string": lambda: _slack_event(enterprise="E0001"),
    "enterprise-list": lambda: _slack_event(enterprise=["E0001"]),
    "enterprise-id-dict": lambda: _slack_event(enterprise_id={"id": "E1"}),
    "team-id-list": lambda: _slack_event(team_id=["T0001"]),
    "channel-dict": lambda: _slack_event(event__channel={"id": "D0001"}),
    "event-time-bool": lambda: _slack_event(event_time=True, event_id="Ev" + "B" * 1500),
    "action-team-string": lambda: _block_action(team="T0001"),
    "action-user-list": lambda: _block_action(user=["U0001"]),
    "action-channel-list": lambda: _block_action(channel=["C0001"], container="C0001"),
    "action-container-string": lambda: _block_action(channel=None, container="C0001"),
    "action-enterprise-string": lambda: _block_action(enterprise="E0001"),
    "deep-json": lambda: sr.http_v2(
        _nested(100_000), {"content-type": "application/json", **sr.sign(_nested(100_000))}
    ),
}


@pytest.mark.parametrize("build", SLACK_BAD.values(), ids=SLACK_BAD.keys())
def test_bad_signed_slack_input_is_4xx(
    fake: FakeSlack, ddb_store: DynamoDBStore, build: Any
) -> None:
    bot = SpyBot()
    slack, _ = edges(fake, Sessions(ddb_store), bot)
    answer = slack.handle(build())
    assert 400 <= answer["statusCode"] < 500, answer
    assert bot.turns == [] and fake.calls == []
    assert ddb_store.client.scan(TableName=ddb_store.table)["Items"] == []


def _messenger(**changes: Any) -> dict[str, Any]:
    item = mr.text("add x")
    item.update(changes)
    return mr.post(json.dumps(mr.single(item)).encode())


MESSENGER_BAD = {
    "sender-string": lambda: _messenger(sender="5550001"),
    "sender-list": lambda: _messenger(sender=["5550001"]),
    "sender-id-dict": lambda: _messenger(sender={"id": {"id": "5550001"}}),
    "timestamp-bool": lambda: _messenger(timestamp=True),
    "timestamp-string": lambda: _messenger(timestamp="1700000000000"),
    "mid-over-limit": lambda: _messenger(message={"mid": "m" * 2000, "text": "add x"}),
    "mid-dict": lambda: _messenger(message={"mid": {"id": "m1"}, "text": "add x"}),
    "timestamp-huge": lambda: _messenger(timestamp=10**400),
    "timestamp-negative": lambda: _messenger(timestamp=-5),
}


def test_a_body_that_is_no_batch_is_400(fake: FakeSlack, ddb_store: DynamoDBStore) -> None:
    bot = SpyBot()
    _, messenger = edges(fake, Sessions(ddb_store), bot)
    for body in (_nested(100_000), b"[]", b'{"object": "page", "entry": 5}', b"{"):
        assert messenger.handle(mr.post(body))["statusCode"] == 400
    assert bot.turns == [] and fake.calls == []
    assert ddb_store.client.scan(TableName=ddb_store.table)["Items"] == []


@pytest.mark.parametrize("build", MESSENGER_BAD.values(), ids=MESSENGER_BAD.keys())
def test_bad_signed_messenger_input_is_refused_and_never_stored(
    fake: FakeSlack, ddb_store: DynamoDBStore, build: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch whose one message is unreadable is a 200 (its redelivery would be as
    unreadable: a 4xx loop gets the webhook disabled), that message refused with a log line
    that carries its hash, never its ids or text."""
    bot = SpyBot()
    _, messenger = edges(fake, Sessions(ddb_store), bot)
    answer = messenger.handle(build())
    assert answer["statusCode"] == 200, answer
    [line] = [r for r in caplog.records if r.getMessage().startswith("message refused")]
    assert len(line.message_hash) == 16  # type: ignore[attr-defined]
    assert "5550001" not in line.getMessage() and "add x" not in line.getMessage()
    assert bot.turns == [] and fake.calls == []
    assert ddb_store.client.scan(TableName=ddb_store.table)["Items"] == []


def test_one_unreadable_message_does_not_stop_its_batch(
    fake: FakeSlack, ddb_store: DynamoDBStore
) -> None:
    """An over-long mid, an absurd timestamp, a crafted sender id: each refused alone, and the
    other senders' messages of the batch are applied (they used to wait for a batch that was
    refused whole on every redelivery)."""
    sessions = Sessions(ddb_store)
    _, messenger = edges(fake, sessions, SpyBot())
    good = [mr.text(f"add fine {n}", psid=f"555000{n}") for n in range(3)]
    bad = [
        mr.text("add long", psid="5550007", mid="m" * 2000),
        mr.text("add late", psid="5550008", timestamp=10**20),
        mr.text("add crafted", psid="5550009#x"),
        "not an object",
    ]
    raw = json.dumps(mr.single(good[0], bad[0], good[1], bad[1], bad[2], bad[3], good[2]))
    for _ in range(2):  # Meta's redelivery: the same answer, nothing applied twice
        assert messenger.handle(mr.post(raw.encode()))["statusCode"] == 200
    for n in range(3):
        key = ConversationKey.messenger(page=mr.PAGE, psid=f"555000{n}")
        assert items(sessions, key) == [f"fine {n}"]
    for psid in ("5550007", "5550008"):
        assert sessions.get(stored(ConversationKey.messenger(page=mr.PAGE, psid=psid))) is None


# -- botocore failures that are not ClientError ---------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A loopback port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_unreachable_endpoint_is_store_unavailable_and_a_5xx(fake: FakeSlack) -> None:
    store = DynamoDBStore("sessions", client=make_client(endpoint_url=_closed_port()))
    with pytest.raises(StoreUnavailableError, match="EndpointConnectionError"):
        store.load(DM_KEY, None)
    _, messenger = edges(fake, Sessions(store), SpyBot())
    assert (
        messenger.handle(mr.post(json.dumps(mr.single(mr.text("add x"))).encode()))["statusCode"]
        == 500
    )


def test_read_timeout_is_store_unavailable(black_hole: str) -> None:
    from botocore.config import Config

    client = make_client(
        endpoint_url=black_hole,
        config=Config(read_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 1}),
    )
    with pytest.raises(StoreUnavailableError, match="ReadTimeout"):
        DynamoDBStore("sessions", client=client).load(DM_KEY, "x")


def test_missing_credentials_is_store_unavailable(
    monkeypatch: pytest.MonkeyPatch, dynamodb_endpoint: str
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    fresh = boto3.session.Session(region_name="us-east-1")  # the default one cached keys
    store = DynamoDBStore(
        "sessions", client=fresh.client("dynamodb", endpoint_url=dynamodb_endpoint)
    )
    with pytest.raises(StoreUnavailableError, match="NoCredentialsError"):
        store.load(DM_KEY, None)


# -- bounded work on the ack path -----------------------------------------------------------------


class AlwaysUnprocessed:
    """A DynamoDB client that throttles every key of every BatchGetItem."""

    def __init__(self) -> None:
        self.calls = 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        return {"Responses": {}, "UnprocessedKeys": RequestItems}

    def get_item(self, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        # A conversation item whose records spilled to their own items.
        item = {"version": {"N": "1"}, "updated_at": {"N": "1"}, "state": {"B": b"j{}"}}
        return {"Item": Key | item | {"sp": {"N": "2"}, "spx": {"N": "9"}}}


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "second-read"])
def test_unprocessed_keys_are_retried_a_bounded_number_of_times(exact: bool) -> None:
    client = AlwaysUnprocessed()
    store = DynamoDBStore("sessions", client=client)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailableError, match="unprocessed"):
        # exact: one read of state, record and tombstone; else the conversation item says a
        # second read is needed (its records spilled) and that read is the one throttled.
        store.load(DM_KEY, DM_KEY.event_sk("x"), event_time=1.0, exact=exact)
    assert client.calls == 4


def test_lost_races_stop_at_the_turns_deadline(ddb_store: DynamoDBStore) -> None:
    import time

    class AlwaysConflict(StoreWrapper):
        def commit(self, *args: Any, **kwargs: Any) -> None:
            raise ConflictError("lost a race")

    slept: list[float] = []
    sessions = Sessions(
        AlwaysConflict(ddb_store),  # type: ignore[arg-type]
        backoff=1.0,
        max_backoff=1.0,
        rand=lambda: 1.0,
        sleep=slept.append,
    )
    count = lambda state, event: ({"n": 1}, [], None)  # noqa: E731
    with pytest.raises(BusyError) as caught:
        sessions.run(DM_KEY, "Ev", count, None, deadline=time.monotonic() + 0.5)
    assert caught.value.attempts == 1 and slept == []
    with pytest.raises(BusyError) as caught:
        sessions.run(DM_KEY, "Ev", count, None)  # no deadline: every attempt is tried
    assert caught.value.attempts == sessions.max_attempts


def test_the_deferral_client_gives_up_before_slacks_deadline(black_hole: str) -> None:
    """An async invoke answers 202 in milliseconds; one that hangs is given up after one
    attempt of at most 0.5 s to connect and 1 s to answer, well inside Slack's 3 s."""
    client = make_lambda_client(endpoint_url=black_hole)
    config = client.meta.config
    assert config.connect_timeout + config.read_timeout <= 1.5
    assert config.retries["total_max_attempts"] == 1
    sent: list[str] = []
    client.meta.events.register("before-send.lambda", lambda **kw: sent.append("attempt"))
    with pytest.raises(Exception, match=r"[Tt]imeout"):
        LambdaDeferrer("chat-sessions-dev-slack", client=client).submit({"kind": "event"})
    assert sent == ["attempt"]  # no retry
