"""``bot.testing.Conversation`` (no store, no ``handlers``) and the real delivery pipeline
(``handlers.tools.testing.PipelineChat``: SQLite, the pipeline, handed-off jobs run) given the
same messages: the same replies in the same order and the same stored state, for the todo
bot, the quiz and a bot whose effects chain past the follow-up limit; and the same scripted
sessions of several users with timers (a reminder, a poll, a scheduled standup): the same
replies, states, pending timers, buttons and replies seen by each user. The two cannot
drift."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from bot import Bot, Effect, EffectCall, Message, Outcome, Reply, effect
from bot.messages import thaw
from bot.testing import Conversation
from examples.poll import PollBot as Poll
from examples.quiz import Quiz
from examples.standup import Standup
from examples.todo import DONE_ACTION, TodoBot
from handlers.tools.testing import PipelineChat
from tests.bots.streamer import Streamer


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


def asked(m: Callable[..., Message]) -> list[Message]:
    return [m(text=t) for t in ("tell me a story", "again")]


def failing_streamer() -> Streamer:
    return Streamer(fail_after=3)


CASES: dict[str, tuple[Callable[[], Any], Callable[..., list[Message]]]] = {
    "todo": (TodoBot, todo),
    "quiz": (Quiz, quiz),
    "effects": (Chain, said),
    "streamed": (Streamer, asked),
    "streamed and failing": (failing_streamer, asked),
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
            assert full.streamed == light.streamed  # the streamed answers, as shown at the end
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


# -- the same scripted session, several users and timers, through both ----------------------

#: A step: ``(user, channel, what, *args)``; ``what`` is a method of both (``press_last``
#: presses the acting user's last seen buttons' N-th, as a person reads them off the screen).
Step = tuple[Any, ...]

#: A weekday 08:00 UTC, so that the standup's 09:30 schedule comes due within the day.
START = 1_796_371_200.0  # 2026-12-04 (a Friday) 08:00 UTC

SESSIONS: dict[str, tuple[Callable[[], Any], list[Step]]] = {
    "todo, a reminder fired": (
        TodoBot,
        [
            ("U0ANN", "D0ANN", "say", "add water the plants"),
            ("U0ANN", "D0ANN", "say", "add call mum"),
            ("U0ANN", "D0ANN", "say", "remind me about 1 in 10 minutes"),
            ("U0ANN", "D0ANN", "say", "remind me about 2 in 1 hour"),
            ("U0BEN", "D0BEN", "say", "add stretch"),
            ("U0BEN", "D0BEN", "say", "remind me about 1 in 20 minutes"),
            ("U0ANN", "D0ANN", "advance", 600),
            ("U0ANN", "D0ANN", "press_last", 0),
            ("U0BEN", "D0BEN", "advance", 3600),
            ("U0BEN", "D0BEN", "say", "list"),
        ],
    ),
    "a poll three users vote in": (
        Poll,
        [
            ("U0ALICE", "C0LUNCH", "command", "/poll", "Lunch? pizza, sushi"),
            ("U0BOB", "C0LUNCH", "press_last", 0),  # Bob sees the poll Alice posted
            ("U0CAROL", "C0LUNCH", "press_last", 1),
            ("U0ALICE", "C0LUNCH", "press_last", 1),
            ("U0BOB", "C0LUNCH", "press_last", 1),
            ("U0ALICE", "C0LUNCH", "press_last", 2),  # Close
        ],
    ),
    "a standup on a schedule": (
        Standup,
        [
            ("U0ALICE", "C0TEAM", "command", "/standup", "daily 09:30"),
            ("U0ALICE", "C0TEAM", "advance", 2 * 3600),  # 10:00: the round opened itself
            ("U0BOB", "C0TEAM", "press_last", 0),  # Answer: the modal
            ("U0BOB", "C0TEAM", "submit", "standup:submit",
             {"yesterday": "tests", "today": "docs", "blockers": ""}),
            ("U0ALICE", "C0TEAM", "press_last", 0),
            ("U0ALICE", "C0TEAM", "submit", "standup:submit",
             {"yesterday": "review", "today": "deploy", "blockers": "none"}),
            ("U0CAROL", "C0TEAM", "advance", 2 * 3600),  # the round closes itself
            ("U0CAROL", "C0TEAM", "command", "/standup", "stop"),
        ],
    ),
}  # fmt: skip


def _timers(chat: Any) -> list[tuple[Any, ...]]:
    return [(t["name"], t["due"], t.get("cron"), t.get("args")) for t in chat.pending_timers]


def _state(chat: Any) -> str:
    state = chat.state
    if dataclasses.is_dataclass(state):  # a bot of several scopes: Scopes
        state = dataclasses.asdict(state)  # type: ignore[arg-type]
    return json.dumps(state, sort_keys=True)


def _effects(chat: Any) -> str:
    return json.dumps([[name, thaw(args)] for name, args in chat.effects], sort_keys=True)


def _dicts(replies: Any) -> list[dict[str, Any]]:
    return [r.to_dict() for r in replies]


@pytest.mark.parametrize("case", SESSIONS)
def test_the_same_session_gives_the_same_results_in_both(case: str) -> None:
    """Every step's replies, then each user's state, pending timers, last buttons and every
    reply seen so far, equal in both (several users of one channel, timers fired)."""
    make, steps = SESSIONS[case]
    light_first = Conversation(make(), clock=lambda: START)
    full_first = PipelineChat(make(), clock=lambda: START)
    light: dict[tuple[str, str], Any] = {}
    full: dict[tuple[str, str], Any] = {}
    try:
        for user, channel, what, *args in steps:
            who = (user, channel)
            if who not in light:
                light[who] = light_first.as_user(user, channel)
                full[who] = full_first.as_user(user, channel)
            one, two = light[who], full[who]
            if what == "press_last":
                expected = _dicts(one.press(one.last_buttons()[args[0]]))
                got = _dicts(two.press(two.last_buttons()[args[0]]))
            else:
                expected = _dicts(getattr(one, what)(*args))
                got = _dicts(getattr(two, what)(*args))
            assert got == expected, (what, args)
            assert expected or what == "advance", "a step that answers nothing tests little"
            for key in light:
                a, b = light[key], full[key]
                assert _state(b) == _state(a), key
                assert _timers(b) == _timers(a), key
                assert b.last_buttons() == a.last_buttons(), key
                assert _dicts(b.replies) == _dicts(a.replies), key
                assert _effects(b) == _effects(a), key
        assert full_first.platform.apologies == 0
        fired = [k for k, a in light.items() if any("⏰" in t for t in a.texts())]
        assert fired or case != "todo, a reminder fired"
    finally:
        full_first.close()


def test_the_pipeline_keeps_no_wrapper_in_the_state() -> None:
    """A pending timer is kept beside the state in the store; ``state`` is the bot's part."""
    chat = PipelineChat(TodoBot())
    try:
        chat.say("add milk")
        chat.say("remind me about 1 in 10 minutes")
        assert set(chat.state) == {"items", "next_id", "pending"}
        assert [t["name"] for t in chat.pending_timers] == ["remind-1"]
        assert chat.texts(chat.advance(600))[0].startswith("⏰ Reminder: “milk”")
        assert chat.pending_timers == []
    finally:
        chat.close()
