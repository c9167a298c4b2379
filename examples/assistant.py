"""An AI assistant: each Slack thread its own conversation with a model, the answer streamed.

    BOT=examples.assistant:bot make run   # then open the inspector, or: make chat

``scope = "thread"``: everyone in one thread shares its state (a top-level message is the root
of its own thread, so each mention starts afresh); on Messenger and Instagram, which have no
threads, it is the conversation. The state is the thread's history, bounded: the last
:data:`MAX_EXCHANGES` exchanges, and no more than :data:`MAX_HISTORY_BYTES` of text, so a long
thread never grows its item without end (the model forgets the oldest exchanges first). Nothing
is read back from Slack's history (``conversations.replies`` is limited to one request a
minute for most apps): the thread's context is this state.

Each question: a status while the model thinks (``Status``), then the answer from any
OpenAI-compatible chat-completions endpoint, streamed into the thread as it comes
(``@effect(..., stream=True)``: one Slack message per question, however often Slack or
Lambda retries; on Messenger a typing indicator, then the whole text). A newer message in the
thread while the answer streams stops it (``cancel_on_message``), as a model UI's "stop".
A new assistant thread gets suggested prompts (``Prompts``); the first question titles it.

Configuration (read when the first answer is asked for): ``ASSISTANT_API_URL`` (the base URL,
up to ``/v1``), ``ASSISTANT_API_KEY`` (sent as a bearer token; empty: none),
``ASSISTANT_MODEL``. ``make run`` points ``ASSISTANT_API_URL`` at a fake model of its own
(deterministic, a word at a time), so it streams with no account. Server-Sent Events are
read with ``requests`` (already a dependency): no SDK.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bot import Bot, Effect, EffectCall, Message, Outcome, Prompts, Reply, Status, Title, effect

#: Exchanges (a question and its answer) the history keeps.
MAX_EXCHANGES = 10
#: Bytes of history text (JSON) it keeps at most: the oldest messages go first.
MAX_HISTORY_BYTES = 16_000
SYSTEM = "You are a helpful assistant in a Slack thread. Answer briefly, in Markdown."
PROMPTS = (
    ("Explain a concept", "Explain event sourcing in three sentences."),
    ("Write a message", "Draft a short note telling my team the deploy is done."),
    ("Brainstorm", "Give me five names for an internal chat bot."),
)
STOPPED = " _(stopped)_"

History = list[dict[str, str]]


def bounded(history: Sequence[Mapping[str, str]]) -> History:
    """The newest messages of ``history`` within :data:`MAX_EXCHANGES` exchanges and
    :data:`MAX_HISTORY_BYTES` bytes; it never starts with an answer (a question goes with
    it)."""
    kept = [dict(m) for m in history][-2 * MAX_EXCHANGES :]
    while kept and (
        len(json.dumps(kept).encode()) > MAX_HISTORY_BYTES or kept[0]["role"] != "user"
    ):
        kept.pop(0)
    if not kept and history:  # one message past the budget alone: its end, cut
        last = dict(history[-1])
        last["content"] = last["content"][-(MAX_HISTORY_BYTES // 8) :]
        kept = [last]
    return kept


def stream_completion(
    messages: Sequence[Mapping[str, str]],
    *,
    url: str,
    key: str = "",
    model: str = "",
    session: Any = None,
    timeout: tuple[float, float] = (5.0, 60.0),
) -> Iterator[str]:
    """The model's answer to ``messages``, chunk by chunk: ``POST {url}/chat/completions``
    with ``"stream": true``, read as Server-Sent Events (``data: {...}`` lines, then
    ``data: [DONE]``).

    Raises:
        requests.RequestException: the endpoint failed or refused (its status, not its body).
    """
    import requests

    http = session or requests.Session()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": [dict(m) for m in messages], "stream": True}
    endpoint = url.rstrip("/") + "/chat/completions"
    with http.post(endpoint, json=body, headers=headers, stream=True, timeout=timeout) as answer:
        answer.raise_for_status()
        answer.encoding = "utf-8"  # SSE is UTF-8; requests would guess ISO-8859-1
        # chunk_size=1: each line as soon as it arrives. The default waits for 512 bytes
        # (several chunks of an answer: the first is seen late), and None may wait for the
        # whole body; reading byte by byte costs microseconds per byte of a short answer.
        for line in answer.iter_lines(chunk_size=1, decode_unicode=True):
            if not line or not line.startswith("data:"):
                continue  # blank separators, comments, event names
            data = line[5:].strip()
            if data == "[DONE]":
                return
            for choice in json.loads(data).get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield str(content)


class ModelNotConfigured(RuntimeError):
    """``ASSISTANT_API_URL`` is not set."""


class Assistant(Bot[dict[str, Any]]):
    """A model's assistant, one state per thread."""

    scope = "thread"

    def __init__(self, *, url: str | None = None, key: str | None = None) -> None:
        self._url = url
        self._key = key

    def initial_state(self) -> dict[str, Any]:
        return {"history": [], "titled": False}

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        if message.kind == "thread_started":
            return Outcome(state, [Reply("Hi! Ask me anything."), Prompts(PROMPTS)])
        if message.kind == "effect":
            return self.answered(state, message)
        if message.kind != "text" or not message.text.strip():
            return Outcome(state)
        history = bounded([*state["history"], {"role": "user", "content": message.text}])
        replies: list[Any] = [Status("is thinking...", loading=("Reading the thread...",))]
        if not state["titled"]:
            replies.append(Title(message.text.strip()[:60]))
        asked = Effect("answer", {"messages": [{"role": "system", "content": SYSTEM}, *history]})
        return Outcome({"history": history, "titled": True}, replies, [asked])

    def answered(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        """The follow-up of an answer: it joins the history (the user saw it streamed)."""
        text = str(message.result or "")
        if message.error == "Cancelled":
            text += STOPPED
        elif message.error is not None:
            return Outcome(state)  # the stream ended with an error line; nothing to keep
        history = bounded([*state["history"], {"role": "assistant", "content": text}])
        return Outcome({**state, "history": history})

    @effect("answer", slow=True, stream=True, cancel_on_message=True)
    def answer(self, args: Any, call: EffectCall) -> Iterator[str]:
        url = self._url or os.environ.get("ASSISTANT_API_URL", "")
        if not url:
            raise ModelNotConfigured("set ASSISTANT_API_URL (an OpenAI-compatible base URL)")
        return stream_completion(
            args["messages"],
            url=url,
            key=self._key if self._key is not None else os.environ.get("ASSISTANT_API_KEY", ""),
            model=os.environ.get("ASSISTANT_MODEL", "gpt-4o-mini"),
        )


bot = Assistant()
