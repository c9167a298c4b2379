"""A fake OpenAI-compatible chat-completions endpoint, streaming, for ``make run``: the
assistant example (``examples/assistant.py``) streams its answers from it with no account.

``POST .../chat/completions`` with ``"stream": true`` answers Server-Sent Events, one
``chat.completion.chunk`` per word of a deterministic answer (it repeats the last user
message and says how many messages it was sent), each after a short pause, then
``data: [DONE]``; without ``stream``, one ``chat.completion``. Nothing is random: the same
request gets the same chunks, so a retried answer resumes exactly (``handlers.pipeline.streams``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

#: Seconds between two chunks (a model's pace, small enough for the inspector to show).
CHUNK_DELAY = 0.05
MODEL = "fake-model"


class StreamedBody(bytes):
    """An HTTP answer's body sent as it is made: the local server writes ``chunks`` one by
    one (flushed) instead of the (empty) bytes."""

    chunks: Iterator[bytes]

    def __new__(cls, chunks: Iterator[bytes]) -> StreamedBody:
        body = super().__new__(cls, b"")
        body.chunks = chunks
        return body


def answer_words(messages: Any) -> list[str]:
    """The fake model's answer to ``messages`` (a chat-completions ``messages`` list), as the
    chunks it streams: a word each (with its space)."""
    said = ""
    count = 0
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, Mapping):
            count += 1
            if message.get("role") == "user":
                said = str(message.get("content") or "")
    text = (
        f'You said: "{said.strip()[:200]}". I am a fake model, streaming this answer a word '
        f"at a time; I was sent {count} messages of this thread."
    )
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + words[-1:]


def _chunk(content: str | None, *, finish: str | None = None) -> bytes:
    data = {
        "id": "chatcmpl-local",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "delta": {} if content is None else {"content": content},
                "finish_reason": finish,
            }
        ],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


def events(
    words: list[str], *, delay: float = CHUNK_DELAY, sleep: Callable[[float], None] = time.sleep
) -> Iterator[bytes]:
    """The Server-Sent Events of one streamed answer."""
    yield _chunk("")  # the role's chunk comes first, with no text
    for word in words:
        sleep(delay)
        yield _chunk(word)
    yield _chunk(None, finish="stop")
    yield b"data: [DONE]\n\n"


def completions(body: bytes, *, delay: float = CHUNK_DELAY) -> tuple[int, dict[str, str], bytes]:
    """``POST .../chat/completions``: the answer streamed (``"stream": true``) or whole."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return 400, {"content-type": "application/json"}, b'{"error": {"message": "bad JSON"}}'
    if not isinstance(request, dict):
        return 400, {"content-type": "application/json"}, b'{"error": {"message": "bad request"}}'
    words = answer_words(request.get("messages"))
    if request.get("stream"):
        headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
        return 200, headers, StreamedBody(events(words, delay=delay))
    whole = {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(words)},
                "finish_reason": "stop",
            }
        ],
    }
    return 200, {"content-type": "application/json"}, json.dumps(whole).encode()


class Served:
    """The fake model on a loopback port of its own (benchmarks, tests): ``url`` is the base
    to set as ``ASSISTANT_API_URL``; ``requests`` what it was asked; ``on_chunk(n)`` is
    called as the ``n``-th chunk of text leaves (``time.monotonic()`` then: the model's own
    time to first chunk)."""

    def __init__(
        self, *, delay: float = CHUNK_DELAY, on_chunk: Callable[[int], None] | None = None
    ) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        served = self
        self.requests: list[Any] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                served.requests.append(json.loads(body or b"{}"))
                status, headers, payload = completions(body, delay=delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for n, chunk in enumerate(getattr(payload, "chunks", None) or [payload]):
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    if on_chunk is not None and n >= 1:  # the first is the role's, no text
                        on_chunk(n)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
