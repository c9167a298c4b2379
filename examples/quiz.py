"""A quiz with answer buttons and a running score per user and conversation.

    BOT=examples.quiz:bot make run      # then: make chat, type `quiz`, press the buttons

Slack: ``/quiz`` or a DM saying ``quiz``; Messenger: ``quiz``. Each question comes with its
answers as buttons (Block Kit buttons on Slack, a button template on Messenger, which keeps
them after a tap). ``score`` shows the score; ``quiz`` starts again.

It shows a state migration: version 1 of this bot kept ``{"question", "score"}``; version 2
keeps how many were answered and the best round too. A conversation stored by version 1 is
migrated on its next turn by ``_v1_to_v2``, a pure function.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypedDict

from bot import Bot, Button, Message, Outcome, Reply


class State(TypedDict):
    question: int | None  # the question being asked, or None between rounds
    correct: int  # this round
    answered: int  # this round
    best: int  # best round so far
    rounds: int


QUESTIONS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("What does DynamoDB bill a transactional write at?", ("1x", "2x", "4x"), 1),
    ("How long does Slack wait for an ack?", ("3 s", "10 s", "30 s"), 0),
    ("How long may a Messenger webhook take to answer?", ("1 s", "5 s", "20 s"), 1),
    ("Which id makes a Slack retry safe to dedup?", ("ts", "event_id", "client_msg_id"), 1),
)
ANSWER = "quiz:answer"
START = "quiz:start"


def _v1_to_v2(old: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept ``{"question": n | None, "score": n}``."""
    score = int(old.get("score") or 0)
    return {
        "question": old.get("question"),
        "correct": score,
        "answered": int(old.get("question") or 0),
        "best": 0,
        "rounds": 0,
    }


class Quiz(Bot[State]):
    commands: ClassVar[tuple[str, ...]] = ("/quiz",)
    action_prefix: ClassVar[str | None] = "quiz:"
    schema_version: ClassVar[int] = 2
    migrations: ClassVar[dict[int, Any]] = {1: _v1_to_v2}

    def initial_state(self) -> State:
        return {"question": None, "correct": 0, "answered": 0, "best": 0, "rounds": 0}

    def turn(self, state: State, message: Message) -> Outcome[State]:
        if message.action == START:
            return self._start(state)
        if message.action == ANSWER:
            return self._answer(state, message.value or "")
        word = message.text.strip().lower()
        if word in ("quiz", "start", "again", "") and message.kind in ("command", "text"):
            if word == "" and message.kind == "text":
                return Outcome(state, [HELP])
            return self._start(state)
        if word == "score":
            return Outcome(state, [Reply(_score(state))])
        return Outcome(state, [HELP])

    def _start(self, state: State) -> Outcome[State]:
        new: State = {**state, "question": 0, "correct": 0, "answered": 0}
        return Outcome(new, [Reply(f"A quiz of {len(QUESTIONS)} questions."), _ask(0)])

    def _answer(self, state: State, value: str) -> Outcome[State]:
        number, _, choice = value.partition(":")
        if state["question"] is None or number != str(state["question"]):
            return Outcome(state, [Reply("That question is over. Say `quiz` to start again.")])
        _, options, right = QUESTIONS[int(number)]
        correct = choice == str(right)
        verdict = "Right!" if correct else f"No: it is {options[right]}."
        new: State = {
            **state,
            "correct": state["correct"] + correct,
            "answered": state["answered"] + 1,
        }
        following = int(number) + 1
        if following < len(QUESTIONS):
            new["question"] = following
            return Outcome(new, [Reply(verdict), _ask(following)])
        new["question"] = None
        new["rounds"] = state["rounds"] + 1
        new["best"] = max(state["best"], new["correct"])
        again = Reply(
            f"{verdict} You scored {new['correct']}/{len(QUESTIONS)}. Best: {new['best']}.",
            [Button("Play again", START)],
        )
        return Outcome(new, [again])


def _ask(number: int) -> Reply:
    question, options, _ = QUESTIONS[number]
    buttons = [Button(o, ANSWER, f"{number}:{i}") for i, o in enumerate(options)]
    return Reply(f"Q{number + 1}. {question}", buttons, persistent=True)


def _score(state: State) -> str:
    now = ""
    if state["question"] is not None:
        now = f"This round: {state['correct']}/{state['answered']}. "
    return f"{now}Best round: {state['best']}/{len(QUESTIONS)} over {state['rounds']} rounds."


HELP = Reply("Say `quiz` to play, `score` for your score.", [Button("Play", START)])

bot = Quiz()
