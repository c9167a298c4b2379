"""A todo list per user per conversation, with a multi-turn prompt.

Commands (a leading ``todo`` is accepted): ``add <text>``, ``add`` (asks what to add; the next
message becomes the item, ``cancel`` drops the prompt), ``list``, ``done <n>``, ``clear``,
``remind me about <n> in <m> minutes`` (also seconds, hours; a :class:`~bot.Timer`
per item, cancelled when the item is done), ``help``. The Done button (action
``todo_done``, value = the item's id) removes an item.

State (JSON)::

    {"items": [{"id": "3", "text": "buy milk"}], "next_id": 4, "pending": null | "add"}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from bot import Bot, Button, CancelTimer, Message, Reply, Timer

DONE_ACTION = "todo_done"
MAX_ITEMS = 100
MAX_TEXT = 500

HELP = (
    "I keep a todo list for you in this conversation.\n"
    "• `add <text>`: add an item (or just `add`, and I'll ask)\n"
    "• `list`: show your items\n"
    "• `done <n>`: tick off item n\n"
    "• `clear`: remove every item\n"
    "• `remind me about <n> in 10 minutes`: a reminder of item n\n"
    "• `cancel`: drop a question I asked\n"
    "• `help`: this text"
)

State = dict[str, Any]
TimerEffect = Timer | CancelTimer

_REMIND = re.compile(
    r"remind(?: me)?(?: about| of)? #?(\d+) in (\d+) ?"
    r"(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)",
    re.IGNORECASE,
)
_UNITS = {"s": 1, "m": 60, "h": 3600}
#: The longest reminder: thirty days.
MAX_REMIND = 30 * 86_400


def turn(state: State, message: Message) -> tuple[State, list[Reply], list[TimerEffect]]:
    """One turn. Pure: the same inputs always give the same outputs. A reminder's timer
    fires as ``Message(kind="timer", payload={"id": ...})``; an item done or cleared cancels
    its reminder."""
    if message.kind == "timer":
        return _reminder(state, message)
    text = " ".join(message.text.split())
    if text.lower().startswith(("todo ", "/todo ")):
        text = text.split(" ", 1)[1]
    asked = _REMIND.fullmatch(text)
    if asked and state.get("pending") != "add":
        return _remind(state, int(asked[1]), int(asked[2]) * _UNITS[asked[3][0].lower()])
    before = {item["id"] for item in state.get("items", [])}
    new_state, replies, _ = _turn(state, message)
    gone = sorted(before - {item["id"] for item in new_state["items"]}, key=int)
    return new_state, replies, [CancelTimer(f"remind-{item_id}") for item_id in gone]


def _remind(state: State, number: int, seconds: int) -> tuple[State, list[Reply], list[Any]]:
    items = state.get("items", [])
    if not 1 <= number <= len(items):
        have = f"you have {len(items)}" if items else "your list is empty"
        return state, [Reply(f"There is no item {number}: {have}.")], []
    if not 1 <= seconds <= MAX_REMIND:
        return state, [Reply("I can remind you from 1 second to 30 days ahead.")], []
    item = items[number - 1]
    when = _duration(seconds)
    timer = Timer(f"remind-{item['id']}", after=seconds, args={"id": item["id"]})
    return state, [Reply(f"OK, I'll remind you about “{item['text']}” in {when}.")], [timer]


def _reminder(state: State, message: Message) -> tuple[State, list[Reply], list[Any]]:
    args = message.payload if isinstance(message.payload, Mapping) else {}
    wanted = str(args.get("id", ""))
    for item in state.get("items", []):
        if item["id"] == wanted:
            button = Button("Done", DONE_ACTION, item["id"])
            return state, [Reply(f"⏰ Reminder: “{item['text']}”", (button,))], []
    return state, [], []  # done meanwhile: nothing to remind


def _duration(seconds: int) -> str:
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _turn(state: State, message: Message) -> tuple[State, list[Reply], None]:
    items: list[dict[str, str]] = [dict(i) for i in state.get("items", [])]
    next_id = int(state.get("next_id", 1))
    pending = state.get("pending")

    if message.action == DONE_ACTION:
        return _done_by_id(items, next_id, pending, message.value or "")

    text = " ".join(message.text.split())
    words = text.split(" ", 1)
    if words[0].lower() in {"todo", "/todo"}:
        text = words[1] if len(words) > 1 else ""
        words = text.split(" ", 1)
    command = words[0].lower()
    rest = words[1].strip() if len(words) > 1 else ""

    if pending == "add":
        if command == "cancel" and not rest:
            return _state(items, next_id, None), [Reply("OK, I won't add anything.")], None
        if text:
            return _add(items, next_id, text)

    if command == "add":
        if not rest:
            return _state(items, next_id, "add"), [Reply("What should I add?")], None
        return _add(items, next_id, rest)
    if command == "list" and not rest:
        return _state(items, next_id, pending), [_list(items)], None
    if command == "done":
        return _done_by_number(items, next_id, pending, rest)
    if command == "clear" and not rest:
        n = len(items)
        label = "item" if n == 1 else "items"
        return _state([], next_id, None), [Reply(f"Cleared {n} {label}.")], None
    if command == "cancel" and not rest:
        return _state(items, next_id, None), [Reply("There was nothing to cancel.")], None
    return _state(items, next_id, pending), [Reply(HELP)], None


def _state(items: list[dict[str, str]], next_id: int, pending: str | None) -> State:
    return {"items": items, "next_id": next_id, "pending": pending}


def _add(items: list[dict[str, str]], next_id: int, text: str) -> tuple[State, list[Reply], None]:
    if len(items) >= MAX_ITEMS:
        return (
            _state(items, next_id, None),
            [Reply(f"Your list is full ({MAX_ITEMS} items): tick some off first.")],
            None,
        )
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    items = [*items, {"id": str(next_id), "text": text}]
    n = len(items)
    reply = Reply(f"Added “{text}”. You have {n} {'item' if n == 1 else 'items'}.")
    return _state(items, next_id + 1, None), [reply], None


def _list(items: list[dict[str, str]]) -> Reply:
    if not items:
        return Reply("Your list is empty. Add something with `add <text>`.")
    lines = [f"{n}. {item['text']}" for n, item in enumerate(items, 1)]
    buttons = tuple(
        Button("Done", DONE_ACTION, item["id"], line)
        for item, line in zip(items, lines, strict=True)
    )
    return Reply("Your list:\n" + "\n".join(lines), buttons)


def _done_by_number(
    items: list[dict[str, str]], next_id: int, pending: str | None, arg: str
) -> tuple[State, list[Reply], None]:
    if not arg.isdecimal() or not 1 <= int(arg) <= len(items):
        have = f"you have {len(items)}" if items else "your list is empty"
        hint = f"There is no item {arg!r}: {have}." if arg else "Which one? Say `done <n>`."
        return _state(items, next_id, pending), [Reply(hint)], None
    removed = items.pop(int(arg) - 1)
    return _state(items, next_id, pending), [_done_reply(removed, items)], None


def _done_by_id(
    items: list[dict[str, str]], next_id: int, pending: Any, item_id: str
) -> tuple[State, list[Reply], None]:
    for i, item in enumerate(items):
        if item["id"] == item_id:
            removed = items.pop(i)
            return _state(items, next_id, pending), [_done_reply(removed, items)], None
    return _state(items, next_id, pending), [Reply("That item is already done.")], None


def _done_reply(removed: dict[str, str], left: list[dict[str, str]]) -> Reply:
    return Reply(f"Done: “{removed['text']}”. {len(left)} left.")


class TodoBot(Bot[State]):
    """The todo bot: ``/todo`` on Slack (or any DM), any message on Messenger, and its Done
    buttons. Every intent is fast (nothing is deferred)."""

    commands: ClassVar[tuple[str, ...]] = ("/todo",)
    actions: ClassVar[tuple[str, ...]] = (DONE_ACTION,)
    namespace: ClassVar[str | None] = "todo"

    def initial_state(self) -> State:
        return {"items": [], "next_id": 1, "pending": None}

    def turn(self, state: State, message: Message) -> tuple[State, list[Reply], list[Any]]:
        return turn(state, message)


#: ``BOT=examples.todo:bot`` (the default bot; ``bot.todo:bot``, its old name, still works).
bot = TodoBot()
