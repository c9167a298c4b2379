"""``examples/assistant.py`` against the fake streaming model ``make run`` serves (a real HTTP
server, Server-Sent Events): the answer streamed and kept in the thread's bounded history,
status, title and prompts; through ``bot.testing`` and through the Slack edge on SQLite and
DynamoDB Local; a model that fails closes the stream with an error line."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import Prompts, Status, Title
from bot.spec import STREAM_ERROR_LINE
from bot.testing import Conversation
from examples.assistant import MAX_EXCHANGES, MAX_HISTORY_BYTES, Assistant, bounded
from handlers.pipeline.streams import StreamSettings
from handlers.settings import from_env
from handlers.tools import fake_model
from sessions import ConversationKey, Sessions
from sessions.store import Store
from tests.fakes import FakeSlack, QueueDeferrer, fake_slack
from tests.functional.conftest import select_store
from tests.keys import stored as stored_key
from tests.slack_requests import dm_body, json_event


class Model:
    """The fake model on a port of its own; ``failures`` answers 500 that many times."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures = 0
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                model.requests.append(json.loads(body))
                if model.failures:
                    model.failures -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                status, headers, payload = fake_model.completions(body, delay=0)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for chunk in getattr(payload, "chunks", [payload]):
                    self.wfile.write(chunk)
                    self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, messages: list[dict[str, str]]) -> str:
        return "".join(fake_model.answer_words(messages))


@pytest.fixture
def model() -> Iterator[Model]:
    served = Model()
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_a_question_streams_the_models_answer_into_the_threads_history(model: Model) -> None:
    chat = Conversation(Assistant(url=model.url)).in_thread("1700000000.000100")
    replies = chat.say("What is a thread?")
    assert isinstance(replies[0], Status) and replies[0].text == "is thinking..."
    assert any(isinstance(r, Title) and r.text == "What is a thread?" for r in replies)
    [sent] = model.requests
    assert sent["stream"] is True and sent["messages"][0]["role"] == "system"
    assert sent["messages"][1:] == [{"role": "user", "content": "What is a thread?"}]
    expected = model.answer(sent["messages"])
    assert chat.streamed == [expected]
    assert chat.state["history"] == [
        {"role": "user", "content": "What is a thread?"},
        {"role": "assistant", "content": expected},
    ]
    chat.say("And a scope?")  # the second question carries the first exchange
    assert [m["role"] for m in model.requests[1]["messages"]] == [
        "system", "user", "assistant", "user",
    ]  # fmt: skip
    assert not any(isinstance(r, Title) for r in chat.say("Thanks"))  # titled once
    chat.in_thread(None).say("Another question")  # a top-level message: a thread of its own
    assert [m["role"] for m in model.requests[-1]["messages"]] == ["system", "user"]


def test_a_new_assistant_thread_gets_suggested_prompts(model: Model) -> None:
    chat = Conversation(Assistant(url=model.url))
    replies = chat.start_thread(channel="C0GENERAL")
    [prompts] = [r for r in replies if isinstance(r, Prompts)]
    assert len(prompts.prompts) == 3
    assert model.requests == []


def test_a_failing_model_ends_the_answer_with_an_error_line_and_keeps_no_answer(
    model: Model,
) -> None:
    model.failures = 1
    chat = Conversation(Assistant(url=model.url))
    chat.say("hello")
    assert chat.streamed == [STREAM_ERROR_LINE]
    assert chat.state["history"] == [{"role": "user", "content": "hello"}]


def test_the_history_stays_within_its_exchanges(model: Model) -> None:
    chat = Conversation(Assistant(url=model.url)).in_thread("1700000000.000100")
    for n in range(MAX_EXCHANGES + 3):
        chat.say(f"question {n}")
    history = chat.state["history"]
    assert len(history) == 2 * MAX_EXCHANGES
    assert history[0] == {"role": "user", "content": "question 3"}


messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=3000)}
    ),
    max_size=40,
)


@given(messages)
def test_bounded_keeps_the_newest_messages_within_both_budgets(history: list[Any]) -> None:
    kept = bounded(history)
    assert len(kept) <= 2 * MAX_EXCHANGES
    if not history:
        assert kept == []
        return
    assert kept, "never forgets everything"
    if len(kept) > 1 or kept[0] == history[-1]:
        assert kept == history[len(history) - len(kept) :]  # the newest, in order
        assert len(json.dumps(kept).encode()) <= MAX_HISTORY_BYTES or len(kept) == 1
    if len(kept) > 1:
        assert kept[0]["role"] == "user"


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def slack_world(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[FakeSlack, Store]]:
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        store = select_store(request, monkeypatch, tmp_path)
        yield fake, store
        store.close()


def test_through_the_slack_edge_the_answer_is_one_streamed_message_in_the_thread(
    model: Model, slack_world: tuple[FakeSlack, Store]
) -> None:
    import handlers.slack

    fake, store = slack_world
    deferrer = QueueDeferrer()
    bot = Assistant(url=model.url)
    edge = handlers.slack.build(from_env(), sessions=Sessions(store), bot=bot, deferrer=deferrer)
    edge.pipeline.streaming = StreamSettings(buffer_chars=20)
    root = "1699999999.000100"  # an assistant thread's messages are in a thread
    event = dm_body("What is a thread?", thread_ts=root)
    for retry in (None, 1):
        assert edge.handle(json_event(event, retry=retry))["statusCode"] == 200
    deferrer.drain(edge.run_deferred)
    expected = model.answer(model.requests[0]["messages"])
    assert list(fake.streams().values()) == [expected]
    assert fake.stream_calls()[0].body["thread_ts"] == root
    methods = [c.path.rsplit(".", 1)[-1] for c in fake.stream_calls()]
    assert methods[0] == "startStream" and methods.count("startStream") == 1
    assert methods.count("appendStream") > 1 and methods[-1] == "stopStream"
    status = [c for c in fake.calls if c.path.endswith("assistant.threads.setStatus")]
    assert len(status) == 1
    key = ConversationKey.slack(team="T0001", channel="D0001", user="U0001", thread=root)
    state = Sessions(store).get(stored_key(key, bot))
    assert state is not None and state.state["history"][-1]["content"] == expected
