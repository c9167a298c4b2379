"""DynamoDB throttling and 500s, injected at the HTTP layer of the real client (botocore's
``before-send`` hook answers in DynamoDB's place), against AWS's DynamoDB Local.

botocore's own retries (standard mode, 3 attempts in all, as ``make_client`` configures: at
most about 3 s of jittered backoff, inside a webhook's deadline) absorb short bursts. Past
them the edge answers 5xx so that the platform redelivers, nothing is half written, and the
redelivery completes the turn exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.httpsession import URLLib3Session

from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore, make_client
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import FakeSlack
from tests.keys import stored
from tests.reliability.conftest import SpyBot, consistency, edges

pytestmark = pytest.mark.dynamodb_local

THROTTLED = (400, "ProvisionedThroughputExceededException")
THROTTLING = (400, "ThrottlingException")
SERVER_ERROR = (500, "InternalServerError")
UNAVAILABLE = (503, "ServiceUnavailable")


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


class Injector:
    """Answers the next requests of an operation with injected errors.

    ``plan[operation]`` is a list of ``(status, error code)``; ``applied=True`` entries first
    send the request to DynamoDB for real and then lose the answer (the write happened, the
    caller sees a 500), which is what an ambiguous failure looks like on the wire.
    """

    def __init__(self, client: Any) -> None:
        self.plan: dict[str, list[tuple[int, str, bool]]] = {}
        self.sent: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._http = URLLib3Session()
        client.meta.events.register("before-send.dynamodb", self._send)

    def fail(self, operation: str, *errors: tuple[int, str], applied: bool = False) -> None:
        self.plan.setdefault(operation, []).extend((s, c, applied) for s, c in errors)

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        operation = request.headers["X-Amz-Target"].decode().split(".")[-1]
        self.sent[operation] += 1
        queue = self.plan.get(operation)
        if not queue:
            return None
        status, code, applied = queue.pop(0)
        self.injected[operation] += 1
        if applied:
            real = self._http.send(request)
            assert real.status_code == 200, real.content
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "x"})
        return AWSResponse(
            request.url,
            status,
            {"content-type": "application/x-amz-json-1.0"},
            _Body(body.encode()),
        )


@pytest.fixture
def injected(dynamodb_endpoint: str, local_table: str) -> Iterator[tuple[DynamoDBStore, Injector]]:
    client = make_client(endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    injector = Injector(client)
    yield DynamoDBStore(local_table, client=client), injector


def messenger_turn(
    fake: FakeSlack, store: DynamoDBStore, psid: str, *, sent_mark: bool = False
) -> tuple[Any, bytes, ConversationKey, Sessions]:
    sessions = Sessions(store, sent_mark=sent_mark, resend_after=0)
    _, messenger = edges(fake, sessions, SpyBot())
    raw = json.dumps(mr.single(mr.text("add tea", psid=psid))).encode()
    return messenger, raw, ConversationKey.messenger(page=mr.PAGE, psid=psid), sessions


def items(sessions: Sessions, key: ConversationKey) -> list[str]:
    conversation = sessions.get(stored(key))
    return [] if conversation is None else [i["text"] for i in conversation.state["items"]]


def replies_to(fake: FakeSlack, psid: str) -> int:
    return sum(1 for c in fake.sends() if c.body["recipient"]["id"] == psid)


@pytest.mark.parametrize("error", [THROTTLED, THROTTLING, SERVER_ERROR, UNAVAILABLE])
def test_a_short_burst_is_absorbed_by_botocore(
    error: tuple[int, str],
    fake: FakeSlack,
    injected: tuple[DynamoDBStore, Injector],
) -> None:
    store, injector = injected
    messenger, raw, key, sessions = messenger_turn(fake, store, "9990001")
    injector.fail("GetItem", error, error)
    injector.fail("TransactWriteItems", error, error)  # the new conversation's creation
    assert messenger.handle(mr.post(raw))["statusCode"] == 200
    assert injector.injected == {"GetItem": 2, "TransactWriteItems": 2}
    assert items(sessions, key) == ["tea"]
    assert replies_to(fake, "9990001") == 1


@pytest.mark.parametrize("operation", ["GetItem", "TransactWriteItems"])
@pytest.mark.parametrize("error", [THROTTLED, SERVER_ERROR])
def test_a_long_outage_answers_5xx_and_writes_nothing(
    operation: str,
    error: tuple[int, str],
    fake: FakeSlack,
    injected: tuple[DynamoDBStore, Injector],
) -> None:
    store, injector = injected
    psid = "9990002"
    messenger, raw, key, sessions = messenger_turn(fake, store, psid)
    injector.fail(operation, error, error, error)  # every attempt botocore makes
    assert messenger.handle(mr.post(raw))["statusCode"] == 500
    assert consistency(store, stored(key)) == (0, 0)
    assert replies_to(fake, psid) == 0
    # Meta redelivers; DynamoDB is back.
    assert messenger.handle(mr.post(raw))["statusCode"] == 200
    assert items(sessions, key) == ["tea"]
    assert consistency(store, stored(key)) == (1, 1)
    assert replies_to(fake, psid) == 1


def test_slack_events_api_answers_5xx_through_an_outage(
    fake: FakeSlack, injected: tuple[DynamoDBStore, Injector]
) -> None:
    store, injector = injected
    sessions = Sessions(store)
    slack, _ = edges(fake, sessions, SpyBot())
    body = sr.dm_body("add jam", channel="D9990003", user="U9990003")
    injector.fail("TransactWriteItems", THROTTLED, THROTTLED, THROTTLED)
    assert slack.handle(sr.json_event(body))["statusCode"] >= 500
    key = ConversationKey.slack(team="T0001", channel="D9990003", user="U9990003")
    assert consistency(store, stored(key)) == (0, 0)
    assert slack.handle(sr.json_event(body, retry=1))["statusCode"] == 200
    assert items(sessions, key) == ["jam"]
    assert [c.body["text"] for c in fake.posts()] == ["Added “jam”. You have 1 item."]


@pytest.mark.parametrize("sent_mark", [False, True], ids=["default", "sent_mark"])
def test_a_commit_applied_but_answered_500_is_retried_safely_by_botocore(
    sent_mark: bool, fake: FakeSlack, injected: tuple[DynamoDBStore, Injector]
) -> None:
    """The transaction is applied and its answer lost. botocore retries TransactWriteItems
    with the same ClientRequestToken (it fills the idempotency token once per call), so the
    retry is answered as the same, already applied, transaction: the turn completes, the
    reply is sent once, nothing is applied twice."""
    store, injector = injected
    psid = "9990004" if sent_mark else "9990005"
    messenger, raw, key, sessions = messenger_turn(fake, store, psid, sent_mark=sent_mark)
    injector.fail("TransactWriteItems", SERVER_ERROR, applied=True)
    assert messenger.handle(mr.post(raw))["statusCode"] == 200
    assert injector.sent["TransactWriteItems"] == 2
    assert items(sessions, key) == ["tea"]
    assert consistency(store, stored(key)) == (1, 1)
    assert replies_to(fake, psid) == 1


@pytest.mark.parametrize("sent_mark", [False, True], ids=["default", "sent_mark"])
def test_an_applied_commit_whose_every_answer_is_lost(
    sent_mark: bool, fake: FakeSlack, injected: tuple[DynamoDBStore, Injector]
) -> None:
    """Applied, then 500 on every attempt: the edge answers 5xx and Meta redelivers, which
    finds the event committed (applied once). That is the crash window of test_faults.py: the
    default mode loses this turn's reply, sent-mark mode sends it on the redelivery."""
    store, injector = injected
    psid = "9990006" if sent_mark else "9990007"
    messenger, raw, key, sessions = messenger_turn(fake, store, psid, sent_mark=sent_mark)
    injector.fail("TransactWriteItems", SERVER_ERROR, applied=True)
    injector.fail("TransactWriteItems", SERVER_ERROR, SERVER_ERROR)
    assert messenger.handle(mr.post(raw))["statusCode"] == 500
    assert consistency(store, stored(key)) == (1, 1)
    assert messenger.handle(mr.post(raw))["statusCode"] == 200
    assert items(sessions, key) == ["tea"]
    assert consistency(store, stored(key)) == (1, 1)
    assert replies_to(fake, psid) == (1 if sent_mark else 0)


def test_a_put_applied_but_answered_500_is_known_as_ours_on_the_retry(
    fake: FakeSlack, injected: tuple[DynamoDBStore, Injector]
) -> None:
    """An existing conversation's turn is one conditional PutItem, which has no idempotency
    token: botocore's retry after a lost answer fails its condition. The item it gets back
    carries the write's own token, so the turn counts as committed and its reply goes out
    once (not taken for another delivery's duplicate, which would lose the reply)."""
    store, injector = injected
    psid = "9990008"
    messenger, raw, key, sessions = messenger_turn(fake, store, psid)
    assert messenger.handle(mr.post(raw))["statusCode"] == 200  # creates the conversation
    second = json.dumps(mr.single(mr.text("add jam", psid=psid))).encode()
    injector.fail("PutItem", SERVER_ERROR, applied=True)
    assert messenger.handle(mr.post(second))["statusCode"] == 200
    assert injector.sent["PutItem"] == 2
    assert items(sessions, key) == ["tea", "jam"]
    assert consistency(store, stored(key)) == (2, 2)
    assert replies_to(fake, psid) == 2
    assert messenger.handle(mr.post(second))["statusCode"] == 200  # Meta redelivers anyway
    assert items(sessions, key) == ["tea", "jam"] and replies_to(fake, psid) == 2
