"""The bot side of a streamed effect (``@effect(..., stream=True)``), pure: what the spec
reads, what counts as text chunks, and the answer as ``bot.testing`` shows it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot import Bot, BotTypeError, Effect, EffectCall, Message, Outcome, effect
from bot.spec import STREAM_ERROR_LINE, BotSpec, run_streamed, stream_chunks


class Answers(Bot[dict[str, Any]]):
    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        return Outcome(state)

    @effect("answer", stream=True, cancel_on_message=True)
    def answer(self, args: Any, call: EffectCall) -> Iterator[str]:
        yield "Hel"
        yield ""
        yield "lo"
        if args.get("fail"):
            raise RuntimeError("secret detail of the model's failure")

    @effect("plain")
    def plain(self, args: Any, call: EffectCall) -> Any:
        return 1


def test_the_spec_knows_its_streamed_effects_and_that_they_are_slow() -> None:
    spec = BotSpec.of(Answers())
    assert set(spec.streams) == {"answer"} and spec.streams["answer"].cancel_on_message
    assert spec.cancels and spec.is_slow_effect("answer") and not spec.is_slow_effect("plain")


def test_cancel_on_message_without_stream_is_refused() -> None:
    with pytest.raises(BotTypeError, match="cancel_on_message needs stream=True"):
        effect("x", cancel_on_message=True)


def test_text_chunks_are_strings_and_empty_ones_are_skipped() -> None:
    assert list(stream_chunks("whole")) == ["whole"]
    assert list(stream_chunks(iter(["a", "", "b"]))) == ["a", "b"]
    with pytest.raises(TypeError, match="yielded int"):
        list(stream_chunks(["a", 1]))
    with pytest.raises(TypeError, match="not int"):
        list(stream_chunks(5))


def test_a_streamed_answer_as_shown_and_its_follow_up() -> None:
    spec = BotSpec.of(Answers())
    origin = Message(text="hi", platform="slack", user="U1", thread="1.000100")
    shown, follow = run_streamed(spec, Effect("answer"), "fx-1", origin)
    assert shown == "Hello" and follow is not None
    assert (follow.kind, follow.result, follow.error, follow.thread) == (
        "effect", "Hello", None, "1.000100",
    )  # fmt: skip
    shown, follow = run_streamed(spec, Effect("answer", {"fail": True}), "fx-2", origin)
    assert shown == f"Hello\n\n{STREAM_ERROR_LINE}"  # the line, never the exception's text
    assert follow is not None and follow.error is not None
    assert follow.error.startswith("RuntimeError") and follow.result == "Hello"
    assert run_streamed(spec, Effect("answer", follow_up=False), "fx-3", origin)[1] is None
