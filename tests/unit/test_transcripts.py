"""Transcripts as regression tests: a conversation recorded by the inspector
(``tests/transcripts/todo-reminder.json``: add two items, a reminder set and fired, a Done
button, a list) replays against the todo bot unchanged, and a change of reply, of state or a
crash is reported turn by turn; ``make replay`` says the same."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bot import Message
from bot.testing import replay
from bot.transcripts import TranscriptError, load
from examples.todo import TodoBot
from handlers.tools import replay as replay_cli

RECORDED = Path(__file__).resolve().parents[1] / "transcripts" / "todo-reminder.json"


def test_the_recorded_conversation_replays_unchanged() -> None:
    transcript = load(RECORDED)
    kinds = [t.message["kind"] for t in transcript.turns]
    assert kinds == ["text", "text", "text", "timer", "action", "text"]  # a fire among them
    assert replay(TodoBot(), RECORDED) == []


class Reworded(TodoBot):
    def turn(self, state: Any, message: Message) -> Any:
        new, replies, effects = super().turn(state, message)
        reworded = [dataclasses.replace(r, text=r.text.replace("Added", "Noted")) for r in replies]
        return new, reworded, effects


class Forgetful(TodoBot):
    def turn(self, state: Any, message: Message) -> Any:
        new, replies, effects = super().turn(state, message)
        return {**new, "next_id": 1} if message.kind == "text" else new, replies, effects


class Crashing(TodoBot):
    def turn(self, state: Any, message: Message) -> Any:
        if message.kind == "timer":
            raise KeyError("id")
        return super().turn(state, message)


def test_a_changed_reply_is_reported_at_its_turn() -> None:
    differences = replay(Reworded(), RECORDED)
    assert [(d.turn, d.what) for d in differences] == [(1, "replies"), (2, "replies")]
    assert "Noted “milk”" in str(differences[0]) and 'text "add milk"' in str(differences[0])


def test_a_changed_state_and_a_crash_are_reported() -> None:
    assert {(d.turn, d.what) for d in replay(Forgetful(), RECORDED)} >= {(1, "state")}
    crashed = replay(Crashing(), RECORDED)
    assert [(d.turn, d.what, d.got) for d in crashed] == [(4, "error", "KeyError: 'id'")]


def test_make_replay(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOT", raising=False)
    assert replay_cli.main([str(RECORDED)]) == 0
    assert "6 turns replayed: the same replies and state" in capsys.readouterr().out
    changed = type("TodoBot", (Reworded,), {})()  # as if TodoBot's code had changed
    monkeypatch.setattr("examples.todo.bot", changed)
    assert replay_cli.main([str(RECORDED), "--bot", "examples.todo:bot"]) == 1
    assert "2 of 6 turns differ" in capsys.readouterr().out


def test_not_a_transcript(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"turns": []}')
    with pytest.raises(TranscriptError, match="not a transcript"):
        load(path)
    assert replay_cli.main([str(path)]) == 2
