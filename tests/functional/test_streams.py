"""Streamed answers (``@effect(..., stream=True)``) through the real edges, with really signed
requests, a fake Slack and Graph over HTTP, on SQLite and DynamoDB Local: one stream per event
however often the event or the job comes, a crash mid-answer finished by the retry, a failing
model's stream closed with an error line, a newer message stopping the answer, Messenger's
typing indicator and whole text."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

import handlers.messenger
import handlers.slack
from bot import EffectCall, Message, effect
from bot.spec import STREAM_CANCELLED_LINE, STREAM_ERROR_LINE
from handlers.pipeline.delivery import SlackRoute
from handlers.pipeline.streams import STALE_AFTER, StreamSettings
from handlers.settings import from_env
from handlers.slack.stream import SlackStream
from sessions import BusyError, ConversationKey, Sessions
from sessions.store import Store
from tests.bots.streamer import ANSWER, CHUNKS, CRASHED, Streamer
from tests.fakes import FakeSlack, QueueDeferrer, fake_slack
from tests.functional.conftest import select_store
from tests.keys import stored as stored_key
from tests.messenger_requests import batch, post, text
from tests.slack_requests import dm_body, json_event

SLACK_KEY = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
MESSENGER_KEY = ConversationKey.messenger(page="100200300", psid="5550001")
ROOT = Path(__file__).resolve().parents[2]


class World:
    def __init__(self, fake: FakeSlack, store: Store) -> None:
        self.fake = fake
        self.store = store
        self.sessions = Sessions(store)
        self.deferrer = QueueDeferrer()

    def slack(self, bot: Any, *, sessions: Sessions | None = None) -> handlers.slack.SlackEdge:
        edge = handlers.slack.build(
            from_env(), sessions=sessions or self.sessions, bot=bot, deferrer=self.deferrer
        )
        edge.pipeline.streaming = StreamSettings(buffer_chars=1)  # one append per chunk
        return edge

    def state(self, key: ConversationKey = SLACK_KEY) -> Any:
        found = self.sessions.get(stored_key(key, Streamer()))
        return None if found is None else found.state

    def calls(self) -> list[tuple[str, str]]:
        """The stream calls: method and the text each carried."""
        return [
            (c.path.split(".")[-1], str(c.body.get("markdown_text") or ""))
            for c in self.fake.stream_calls()
        ]


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


def test_an_event_delivered_three_times_at_once_streams_one_answer(world: World) -> None:
    slack = world.slack(Streamer())
    event = dm_body("tell me a story")
    deliveries = [json_event(event)] + [json_event(event, retry=n) for n in (1, 2)]
    with ThreadPoolExecutor(3) as pool:
        for answer in pool.map(slack.handle, deliveries):
            ok(answer)
    [job] = world.deferrer.jobs  # one commit, one slow effect
    assert job["kind"] == "effect"
    # Lambda may run an async invoke more than once, at the same time too.
    with ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(slack.run_deferred, dict(job)) for _ in range(3)]
        for run in runs:
            with contextlib.suppress(BusyError):  # another run streams it: retried later
                run.result()
    slack.run_deferred(dict(job))  # a late retry: finished, nothing to do
    calls = world.calls()
    assert [m for m, _ in calls].count("startStream") == 1
    assert [m for m, _ in calls].count("stopStream") == 1
    assert calls[0][0] == "startStream" and calls[-1][0] == "stopStream"
    assert [t for m, t in calls if m == "appendStream"][:2] == list(CHUNKS[:2])
    assert "".join(t for _, t in calls) == ANSWER
    start = world.fake.stream_calls()[0].body
    assert start["channel"] == "D0001" and start["thread_ts"] == event["event"]["ts"]
    assert "recipient_user_id" not in start  # a DM needs none
    assert list(world.fake.streams().values()) == [ANSWER]
    assert world.state()["answers"] == [ANSWER]  # the follow-up, once, with the full text


def test_a_crash_after_the_second_append_is_finished_by_the_retry_in_the_same_message(
    world: World, tmp_path: Path
) -> None:
    slack = world.slack(Streamer())
    ok(slack.handle(json_event(dm_body("tell me a story"))))
    [job] = world.deferrer.jobs
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    # The job's first run, in a process of its own, dies when the model is asked for its
    # third chunk: two appends went out, the stream is open.
    died = subprocess.run(
        [sys.executable, "-m", "tests.bots.streamer", str(job_file), "2"],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        timeout=120,
    )
    assert died.returncode == CRASHED, died.stderr.decode()[-2000:]
    assert [m for m, _ in world.calls()] == ["startStream", "appendStream", "appendStream"]
    # Lambda retries the job later (a minute, at least): the chain is stale by then.
    later = Sessions(world.store, clock=lambda: time.time() + STALE_AFTER + 5)
    retry = world.slack(Streamer(), sessions=later)
    retry.run_deferred(dict(job))
    calls = world.calls()
    assert [m for m, _ in calls].count("startStream") == 1
    assert [m for m, _ in calls].count("stopStream") == 1
    assert [t for m, t in calls if m == "appendStream"][:2] == list(CHUNKS[:2])
    assert list(world.fake.streams().values()) == [ANSWER]  # one message, complete
    assert world.state()["answers"] == [ANSWER]
    retry.run_deferred(dict(job))  # and once more: nothing
    assert len(world.fake.stream_calls()) == len(calls)


def test_a_failing_model_stops_its_stream_with_an_error_line_and_an_error_follow_up(
    world: World,
) -> None:
    slack = world.slack(Streamer(fail_after=2))
    ok(slack.handle(json_event(dm_body("tell me a story"))))
    world.deferrer.drain(slack.run_deferred)
    calls = world.calls()
    assert [m for m, _ in calls] == ["startStream", "appendStream", "appendStream", "stopStream"]
    assert calls[-1][1] == "\n\n" + STREAM_ERROR_LINE
    assert "model is down" not in json.dumps([c.body for c in world.fake.calls])
    assert world.state() == {"answers": [], "errors": ["ModelDown"]}


def test_a_newer_message_in_the_conversation_stops_the_answer(world: World) -> None:
    now = int(time.time())
    pending: list[dict[str, Any]] = []

    def user_writes(index: int) -> None:
        if index == 2:  # while the answer streams, the user says something else
            newer = dm_body("stop", ts=f"{now + 1}.000200") | {"event_time": now + 1}
            ok(slack.handle(json_event(newer)))
            pending.extend(world.deferrer.jobs)
            world.deferrer.jobs.clear()

    slack = world.slack(Streamer(on_chunk=user_writes))
    slack.pipeline.streaming = StreamSettings(buffer_chars=1, cancel_every=0.0)
    first = dm_body("tell me a story", ts=f"{now}.000100") | {"event_time": now}
    ok(slack.handle(json_event(first)))
    [job] = world.deferrer.jobs
    world.deferrer.jobs.clear()
    slack.run_deferred(job)
    calls = world.calls()
    assert [m for m, _ in calls].count("stopStream") == 1
    assert calls[-1] == ("stopStream", "\n\n" + STREAM_CANCELLED_LINE)
    assert "".join(t for m, t in calls if m == "appendStream") == "".join(CHUNKS[:3])
    assert world.state()["errors"] == ["Cancelled"]
    assert len(pending) == 1  # the newer message's own answer, still to come


def test_the_same_bot_on_messenger_gets_a_typing_indicator_and_the_whole_text_once(
    world: World,
) -> None:
    bot = Streamer()
    messenger = handlers.messenger.build(
        from_env(), sessions=world.sessions, bot=bot, deferrer=world.deferrer
    )
    message = text("tell me a story")
    for _ in range(3):  # Meta retries
        ok(messenger.handle(post(batch(("100200300", [message])))))
    [job] = world.deferrer.jobs
    messenger.run_deferred(dict(job))
    messenger.run_deferred(dict(job))  # the job again: nothing
    assert world.fake.sender_actions() == ["typing_on"]
    assert [c.body["message"]["text"] for c in world.fake.sends()] == [ANSWER]
    assert world.fake.stream_calls() == []
    assert world.state(MESSENGER_KEY)["answers"] == [ANSWER]


def test_a_stream_outside_a_dm_names_its_recipient() -> None:
    with fake_slack() as fake:
        message = Message(
            text="hi", platform="slack", workspace="T0001", conversation="C0001", user="U0001",
            thread="1699999999.000100",
        )  # fmt: skip
        route = SlackRoute("event", thread="1699999999.000100", ts="1700000000.000100")
        web = WebClient(token="xoxb-test", base_url=fake.api_url)
        stream = SlackStream(web, message, route)
        ts = stream.open()
        stream.append(ts, "Hello")
        stream.stop(ts, "")
        start, append, stop = (c.body for c in fake.stream_calls())
    assert start == {
        "channel": "C0001",
        "thread_ts": "1699999999.000100",  # the thread it is in
        "recipient_user_id": "U0001",
        "recipient_team_id": "T0001",
    }
    assert append == {"channel": "C0001", "ts": ts, "markdown_text": "Hello"}
    assert stop == {"channel": "C0001", "ts": ts}


class Eager(Streamer):
    """The same answer, declared without ``slow``."""

    @effect("answer", stream=True)
    def answer(self, args: Any, call: EffectCall) -> Iterator[str]:
        yield from CHUNKS


def test_a_streamed_effect_is_always_handed_off_never_run_before_the_ack(world: World) -> None:
    slack = world.slack(Eager())
    ok(slack.handle(json_event(dm_body("tell me a story"))))
    assert world.fake.stream_calls() == []  # nothing streamed inside the webhook
    assert [j["kind"] for j in world.deferrer.jobs] == ["effect"]
    world.deferrer.drain(slack.run_deferred)
    assert list(world.fake.streams().values()) == [ANSWER]
