from __future__ import annotations

from typing import Any

from bot import Message
from bot.replies import reply_from_dict
from examples.todo import DONE_ACTION, MAX_ITEMS, TodoBot, turn
from handlers.slack.render import render


def say(state: dict[str, Any], text: str) -> tuple[dict[str, Any], str]:
    state, replies, _ = turn(state, Message(text=text))
    return state, replies[0].text


def test_add_list_done_clear() -> None:
    state, text = say({}, "add milk")
    assert text == "Added “milk”. You have 1 item."
    state, _ = say(state, "todo add eggs")
    state, replies, _ = turn(state, Message(text="list"))
    assert replies[0].text == "Your list:\n1. milk\n2. eggs"
    assert [b.value for b in replies[0].buttons] == ["1", "2"]
    state, text = say(state, "done 1")
    assert text == "Done: “milk”. 1 left."
    state, text = say(state, "done 5")
    assert "no item '5'" in text
    state, text = say(state, "clear")
    assert text == "Cleared 1 item." and state["items"] == []


def test_prompt_takes_the_next_message_literally_and_cancel_drops_it() -> None:
    state, text = say({}, "add")
    assert text == "What should I add?" and state["pending"] == "add"
    state, text = say(state, "list the groceries")
    assert text.startswith("Added “list the groceries”") and state["pending"] is None
    state, _ = say(state, "add")
    state, text = say(state, "cancel")
    assert "won't add" in text and len(state["items"]) == 1


def test_done_button_by_id_and_ids_are_not_reused() -> None:
    state, _ = say({}, "add a")
    state, _ = say(state, "add b")
    state, replies, _ = turn(state, Message(action=DONE_ACTION, value="1"))
    assert replies[0].text == "Done: “a”. 1 left."
    state, replies, _ = turn(state, Message(action=DONE_ACTION, value="1"))
    assert replies[0].text == "That item is already done."
    state, _ = say(state, "add c")
    assert [i["id"] for i in state["items"]] == ["2", "3"]


def test_limits() -> None:
    state: dict[str, Any] = {}
    for i in range(MAX_ITEMS):
        state, _ = say(state, f"add {i}")
    state, text = say(state, "add one more")
    assert "full" in text and len(state["items"]) == MAX_ITEMS
    state, text = say({}, "add " + "x" * 2000)
    assert len(state["items"][0]["text"]) == 500


def test_turn_is_pure() -> None:
    state = {"items": [{"id": "1", "text": "a"}], "next_id": 2, "pending": None}
    snapshot = repr(state)
    assert turn(state, Message(text="done 1")) == turn(state, Message(text="done 1"))
    assert repr(state) == snapshot
    assert TodoBot().is_slow(Message(text="add x")) is False


def test_slack_rendering_keeps_within_block_kit_limits() -> None:
    state: dict[str, Any] = {}
    for i in range(MAX_ITEMS):
        state, _ = say(state, f"add <@U{i}>")
    _, replies, _ = turn(state, Message(text="list"))
    [message] = render(replies)
    assert len(message["blocks"]) <= 50
    assert "<@" not in message["text"]
    round_trip = reply_from_dict(replies[0].to_dict())
    assert round_trip == replies[0]
