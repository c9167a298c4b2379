"""Slow turns: acked at once, handed off, answered once; retried when they fail; and the
DynamoDB requests each Slack path costs."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

import handlers.slack
from bot import Message, Reply
from examples.todo import TodoBot
from handlers.pipeline.deferral import DEFERRED_KEY
from handlers.settings import from_env
from sessions import ConversationKey, Sessions, codec
from sessions.dynamodb import DynamoDBStore
from tests.fakes import FlakyStore
from tests.functional.conftest import SlackWorld
from tests.integration.test_request_budget import RequestCounter
from tests.slack_requests import dm_body, json_event, slash


class SlowTodo(TodoBot):
    """``slow <text>`` is declared slow (known from the words, before the ack), sleeps, then
    adds ``<text>``. ``poison <text>`` raises, as a bug in a bot does, on every delivery."""

    def __init__(self, *, delay: float = 5.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()

    def is_slow(self, message: Message) -> bool:
        return message.text.startswith("slow ")

    def turn(self, state: dict[str, Any], message: Message) -> tuple[Any, list[Reply], None]:
        if "poison" in message.text:
            raise RuntimeError("bug in the bot")
        if message.text.startswith("slow "):
            time.sleep(self.delay)
            message = Message(text="add " + message.text.removeprefix("slow "))
        return super().turn(state, message)


def test_slow_slash_command_acks_at_once_and_answers_once(slack: SlackWorld) -> None:
    edge = handlers.slack.build(bot=SlowTodo(delay=5.0))
    started = time.monotonic()
    result = edge.handle(slash("slow write the report", response_url=slack.fake.response_url("s")))
    acked_in = time.monotonic() - started
    assert result["statusCode"] == 200 and acked_in < 3.0, acked_in
    assert slack.items() == []  # not done yet: the turn is still sleeping
    [answer] = slack.fake.wait_for(slack.fake.responses, timeout=30)
    assert "Added “write the report”" in answer.body["text"]
    assert answer.body["response_type"] == "ephemeral"
    assert edge.deferrer.drain(timeout=30)  # type: ignore[attr-defined]
    assert len(slack.fake.responses()) == 1
    assert slack.items() == ["write the report"]


def test_slow_dm_acks_at_once_and_posts_once(slack: SlackWorld) -> None:
    edge = handlers.slack.build(bot=SlowTodo(delay=5.0))
    body = dm_body("slow file taxes")
    started = time.monotonic()
    assert edge.handle(json_event(body))["statusCode"] == 200
    assert time.monotonic() - started < 3.0
    # Slack's retry of the same event while the first is still running changes nothing.
    assert edge.handle(json_event(body, retry=1))["statusCode"] == 200
    posts = slack.fake.wait_for(slack.fake.posts, timeout=30)
    assert edge.deferrer.drain(timeout=30)  # type: ignore[attr-defined]
    assert len(slack.fake.posts()) == 1 and "file taxes" in posts[0].body["text"]
    assert slack.items(channel="D0001") == ["file taxes"]


def flaky(world: Any, failures: int = 1) -> Sessions:
    """The world's store, throttled for its first ``failures`` commits."""
    return Sessions(FlakyStore(world.store, failures=failures))  # type: ignore[arg-type]


def test_deferred_turn_that_fails_is_retried(slack: SlackWorld) -> None:
    edge = handlers.slack.build(bot=SlowTodo(delay=0.0), sessions=flaky(slack))
    result = edge.handle(slash("slow try again", response_url=slack.fake.response_url("r")))
    assert result["statusCode"] == 200
    assert edge.deferrer.drain(timeout=30)  # type: ignore[attr-defined]
    [answer] = slack.fake.responses()
    assert "Added “try again”" in answer.body["text"]
    assert slack.items() == ["try again"]


def test_event_that_fails_before_commit_answers_5xx_and_its_retry_completes(
    slack: SlackWorld,
) -> None:
    edge = handlers.slack.build(bot=SlowTodo(), sessions=flaky(slack))
    body = dm_body("add survive")
    first = edge.handle(json_event(body))
    assert first["statusCode"] >= 500  # Slack redelivers
    assert slack.items(channel="D0001") == [] and slack.fake.posts() == []
    assert edge.handle(json_event(body, retry=1, reason="http_error"))["statusCode"] == 200
    assert slack.items(channel="D0001") == ["survive"]
    assert len(slack.fake.posts()) == 1


@pytest.mark.parametrize("poison", [False, True], ids=["store-down", "bot-bug"])
def test_slash_command_error_is_a_200_apology(slack: SlackWorld, poison: bool) -> None:
    sessions = Sessions(slack.store) if poison else flaky(slack)
    edge = handlers.slack.build(bot=SlowTodo(), sessions=sessions)
    result = edge.handle(slash("add poison" if poison else "add x"))
    assert result["statusCode"] == 200
    assert "Sorry" in json.loads(result["body"])["text"]
    assert slack.items() == []
    letters = slack.sessions.dead_letters(
        ConversationKey.slack(team="T0001", channel="C0001", user="U0001").user_key
    )
    assert len(letters) == (1 if poison else 0)
    if poison:  # kept with what a replay needs: the command as a deferred job
        job = codec.decode(letters[0][1].payload or b"")
        assert job["kind"] == "command" and job["message"]["text"] == "add poison"


class FakeLambda:
    """Stands in for boto3's Lambda client, passed to the deferrer: records async invokes."""

    def __init__(self) -> None:
        self.invokes: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invokes.append(kwargs)
        return {"StatusCode": 202}


def test_inside_lambda_the_hand_off_is_an_async_self_invoke(slack: SlackWorld) -> None:
    from handlers.pipeline.deferral import LambdaDeferrer

    fake_lambda = FakeLambda()
    deferrer = LambdaDeferrer("sessions-dev-slack", client=fake_lambda)
    edge = handlers.slack.build(bot=SlowTodo(delay=0.0), deferrer=deferrer)
    event = slash("slow ship it", response_url=slack.fake.response_url("l"))
    assert edge.handle(event)["statusCode"] == 200
    [invoke] = fake_lambda.invokes
    assert invoke["FunctionName"] == "sessions-dev-slack"
    assert invoke["InvocationType"] == "Event"
    payload = json.loads(invoke["Payload"])
    job = payload[DEFERRED_KEY]
    # The verified, parsed event travels; the raw request and its signature do not.
    assert "x-slack-signature" not in invoke["Payload"].decode()
    assert job["message"]["text"] == "slow ship it"
    # The signed request time travels with it: a user delete is checked against it however
    # late Lambda runs (or retries) the job.
    assert abs(job["event_time"] - time.time()) < 60
    assert slack.items() == []
    # Lambda then runs the job in a new invocation of the same handler.
    assert edge.handle(payload) == {"ok": True}
    assert slack.items() == ["ship it"]
    assert len(slack.fake.responses()) == 1
    edge.handle(payload)  # Lambda's own retry of the async event: a duplicate
    assert slack.items() == ["ship it"] and len(slack.fake.responses()) == 1


def test_every_deferred_job_carries_the_event_time(slack: SlackWorld) -> None:
    from handlers.pipeline.deferral import LambdaDeferrer
    from tests.slack_requests import block_action

    fake_lambda = FakeLambda()

    class SlowDone(SlowTodo):
        def is_slow(self, message: Message) -> bool:
            return True

    edge = handlers.slack.build(
        bot=SlowDone(delay=0.0), deferrer=LambdaDeferrer("f", client=fake_lambda)
    )
    edge.handle(slash("list"))
    edge.handle(json_event(dm_body("list")))
    edge.handle(block_action("1"))
    jobs = [json.loads(i["Payload"])[DEFERRED_KEY] for i in fake_lambda.invokes]
    assert [j["kind"] for j in jobs] == ["command", "event", "action"]
    assert all(isinstance(j["event_time"], float) for j in jobs), jobs
    assert all(abs(j["event_time"] - time.time()) < 60 for j in jobs)


def test_slack_calls_are_retried_only_when_they_never_reached_slack() -> None:
    from http.client import RemoteDisconnected
    from urllib.error import URLError

    from slack_sdk.http_retry import HttpRequest, RetryState

    from handlers.slack import NotSentRetryHandler

    handler = NotSentRetryHandler()
    request = HttpRequest(method="POST", url="http://x", headers={}, body_params={})

    def retried(error: Exception) -> bool:
        return handler.can_retry(state=RetryState(), request=request, error=error)

    assert retried(URLError(ConnectionRefusedError(111, "refused")))
    assert not retried(URLError(ConnectionResetError(104, "reset")))  # may have been posted
    assert not retried(RemoteDisconnected("closed"))
    assert not retried(URLError(TimeoutError("timed out")))


@pytest.fixture
def counted_edge(
    slack: SlackWorld, local_client: Any, local_table: str
) -> tuple[handlers.slack.SlackEdge, RequestCounter]:
    counter = RequestCounter(local_client)
    sessions = Sessions(DynamoDBStore(local_table, client=local_client))
    edge = handlers.slack.SlackEdge(
        settings=from_env(), sessions=sessions, bot=SlowTodo(delay=0.0), deferrer=HeldJobs()
    )
    return edge, counter


class HeldJobs:
    """A deferrer that keeps jobs until the test runs them."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def submit(self, job: dict[str, Any]) -> None:
        self.jobs.append(job)


def test_dynamodb_requests_per_slack_turn(
    counted_edge: tuple[handlers.slack.SlackEdge, RequestCounter], slack: SlackWorld
) -> None:
    edge, counter = counted_edge
    # A new conversation's first event: a read, and a commit that checks the tombstone.
    assert edge.handle(slash("add a"))["statusCode"] == 200
    assert counter.take() == {"GetItem": 1, "TransactWriteItems": 1}
    body = dm_body("add b")
    assert edge.handle(json_event(body))["statusCode"] == 200
    assert counter.take() == {"GetItem": 1, "TransactWriteItems": 1}
    assert edge.handle(json_event(body, retry=1))["statusCode"] == 200
    assert counter.take() == {"GetItem": 1}
    assert edge.handle(json_event(dm_body("add c", bot_id="B1")))["statusCode"] == 200
    assert counter.take() == {}  # ignored before any read
    assert edge.handle(slash("slow d", response_url=slack.fake.response_url()))["statusCode"] == 200
    assert counter.take() == {}  # a deferred turn's ack costs nothing
    [job] = edge.deferrer.jobs  # type: ignore[attr-defined]
    edge.run_deferred(job)
    assert counter.take() == {"GetItem": 1, "PutItem": 1}  # the conversation exists
