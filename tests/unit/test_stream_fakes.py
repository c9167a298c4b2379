"""The local fake Slack's streaming methods (what ``make run``'s inspector and ``make chat``
show), the fake streaming model's Server-Sent Events, and ``make chat``'s view of a stream:
each pure, no server."""

from __future__ import annotations

import json

from handlers.tools import fake_model
from handlers.tools.chat import _streaming
from handlers.tools.fakes import FakeApis


def call(fakes: FakeApis, method: str, **data: str) -> dict[str, object]:
    status, _, body = fakes.handle(
        "POST", f"/_fake/slack/api/{method}", f"/_fake/slack/api/{method}",
        {"content-type": "application/json"}, json.dumps(data).encode(),
    )  # fmt: skip
    assert status == 200
    answer: dict[str, object] = json.loads(body)
    return answer


def test_a_stream_grows_in_the_outbox_and_refuses_calls_after_its_stop() -> None:
    fakes = FakeApis()
    ts = str(call(fakes, "chat.startStream", channel="D1", thread_ts="1.000100")["ts"])
    other = str(call(fakes, "chat.startStream", channel="D1", thread_ts="2.000100")["ts"])
    assert ts != other  # a ts per stream
    call(fakes, "chat.appendStream", channel="D1", ts=ts, markdown_text="Hello")
    call(fakes, "chat.stopStream", channel="D1", ts=ts, markdown_text=", world")
    shown = [i["raw"] for i in fakes.outbox.items if i["raw"].get("stream") == ts]
    assert [(r["text"], r["streaming"]) for r in shown] == [
        ("", True), ("Hello", True), ("Hello, world", False),
    ]  # fmt: skip
    assert not _streaming([i for i in fakes.outbox.items if i["raw"].get("stream") == ts])
    late = call(fakes, "chat.appendStream", channel="D1", ts=ts, markdown_text="!")
    assert late == {"ok": False, "error": "message_not_in_streaming_state"}
    assert (
        call(fakes, "chat.appendStream", channel="D1", ts="9.9", markdown_text="x")["ok"] is False
    )
    assert call(fakes, "chat.startStream", channel="D1")["ok"] is False  # no thread_ts
    assert [c["method"] for c in fakes.streams[ts]["calls"]] == [
        "chat.startStream", "chat.appendStream", "chat.stopStream",
    ]  # fmt: skip


def test_the_fake_model_streams_its_deterministic_answer_as_server_sent_events() -> None:
    request = {"stream": True, "messages": [{"role": "user", "content": "hi"}]}
    status, headers, body = fake_model.completions(json.dumps(request).encode(), delay=0)
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = b"".join(getattr(body, "chunks")).decode().split("\n\n")  # noqa: B009
    assert events[-2:] == ["data: [DONE]", ""]
    text = "".join(
        json.loads(e.removeprefix("data: "))["choices"][0]["delta"].get("content", "")
        for e in events[:-2]
    )
    assert text == "".join(fake_model.answer_words(request["messages"]))
    assert text.startswith('You said: "hi".')
    whole = fake_model.completions(json.dumps({**request, "stream": False}).encode())[2]
    assert json.loads(whole)["choices"][0]["message"]["content"] == text
    assert fake_model.completions(b"not json")[0] == 400
