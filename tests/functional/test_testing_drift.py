"""``bot.testing.Conversation`` (no store, no ``handlers``) and the real delivery pipeline
(``handlers.tools.testing.PipelineChat``: SQLite, the pipeline, handed-off jobs run) given the
same messages: the same replies in the same order and the same stored state, for the todo
bot, the quiz and a bot whose effects chain past the follow-up limit. The two cannot drift."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from bot import Bot, Effect, EffectCall, Message, Outcome, Reply, effect
from bot.testing import Conversation
from bot.todo import DONE_ACTION, TodoBot
from examples.quiz import Quiz
from handlers.tools.testing import PipelineChat


class Chain(Bot[dict[str, Any]]):
    """``go N``: a fast effect whose follow-up asks for the next one, N rounds (past the
    follow-up limit when N is large); ``slow``: one slow effect; an effect that raises."""

    def initial_state(self) -> dict[str, Any]:
        return {"rounds": 0, "errors": []}

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        if message.kind == "effect":
            if message.error is not None:
                errors = [*state["errors"], message.error]
                return Outcome({**state, "errors": errors}, [Reply(f"failed: {message.error}")])
            left = int(message.result)
            state = {**state, "rounds": state["rounds"] + 1}
            more = [Effect("step", {"left": left - 1})] if left > 1 else []
            return Outcome(state, [Reply(f"round {state['rounds']}, {left} left")], more)
        text = message.text or ""
        if text.startswith("go "):
            return Outcome(state, [Reply("going")], [Effect("step", {"left": int(text[3:])})])
        if text == "slow":
            return Outcome(state, [Reply("later")], [Effect("later", {"n": 5})])
        if text == "boom":
            return Outcome(state, [Reply("trying")], [Effect("boom")])
        return Outcome(state, [Reply(f"rounds: {state['rounds']}")])

    @effect("step")
    def step(self, args: Any, call: EffectCall) -> Any:
        return args["left"]

    @effect("later", slow=True)
    def later(self, args: Any, call: EffectCall) -> Any:
        return args["n"]

    @effect("boom")
    def boom(self, args: Any, call: EffectCall) -> Any:
        raise ValueError("the API said no")


def said(m: Callable[..., Message]) -> list[Message]:
    return [m(text=t) for t in ("hello", "go 3", "slow", "boom", "go 15", "status")]


def todo(m: Callable[..., Message]) -> list[Message]:
    return [
        m(kind="command", command="/todo", text="add milk"),
        m(text="add eggs"),
        m(text="add"),
        m(text="bread, the good one"),
        m(kind="action", action=DONE_ACTION, value="1"),
        m(text="list"),
        m(kind="command", command="/todo", text="done 9"),
        m(text="clear"),
    ]


def quiz(m: Callable[..., Message]) -> list[Message]:
    answers = [m(kind="action", action="quiz:answer", value=f"{n}:{c}")
               for n, c in enumerate([1, 0, 2, 1])]  # fmt: skip
    return [m(kind="command", command="/quiz", text=""), *answers, m(text="hi")]


CASES: dict[str, tuple[Callable[[], Any], Callable[..., list[Message]]]] = {
    "todo": (TodoBot, todo),
    "quiz": (Quiz, quiz),
    "effects": (Chain, said),
}


@pytest.mark.parametrize("platform", ["slack", "messenger"])
@pytest.mark.parametrize("case", CASES)
def test_bot_testing_and_the_pipeline_agree(case: str, platform: str) -> None:
    make, script = CASES[case]
    light = Conversation(make(), platform=platform)
    full = PipelineChat(make(), platform=platform)
    try:
        for message in script(full.message):
            expected = [r.to_dict() for r in light.send(message)]
            got = [r.to_dict() for r in full.send(message)]
            assert got == expected, message
            assert json.dumps(full.state, sort_keys=True) == json.dumps(light.state, sort_keys=True)
        assert full.platform.apologies == 0
    finally:
        full.close()


def test_the_follow_up_limit_holds_in_both() -> None:
    light, full = Conversation(Chain()), PipelineChat(Chain())
    try:
        message = full.message(text="go 15")
        assert len(light.send(message)) == len(full.send(message)) == 11  # "going" + 10 rounds
        assert light.state["rounds"] == full.state["rounds"] == 10
    finally:
        full.close()
