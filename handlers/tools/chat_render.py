"""What ``make chat`` prints: the bot's replies as lines of text (their buttons numbered for
``#N``, a thread's replies marked, an assistant's status and title), the stored state and the
pending timers of a ``/state`` answer. Pure functions of what the server answered.
"""

from __future__ import annotations

import json
import time
from typing import Any


def render(
    messages: list[dict[str, Any]], *, buttons: list[dict[str, Any]], thread: str | None
) -> tuple[list[str], list[dict[str, Any]], dict[str, Any] | None]:
    """Printable replies, the buttons pressable after them, the form one of them opened.

    Their buttons are numbered (``#1``) after ``buttons``: replies with buttons replace the
    ones shown before; replies without any keep them. A reply in a thread other than
    ``thread`` (the one the user is in) is shown as ``[thread <ts>] ...``.
    """
    if any(message.get("buttons") for message in messages):
        buttons = []
    buttons = list(buttons)
    modal: dict[str, Any] | None = None
    lines = []
    for message in messages:
        if message.get("modal"):
            modal = message["modal"]
            title = (modal.get("title") or {}).get("text", "form")
            lines.append(f"(a form opened: {title})")
            continue
        text = unescape(str(message.get("text") or ""))
        assistant = message.get("assistant")
        if isinstance(assistant, dict) and assistant.get("kind") in ("status", "title"):
            lines.append(f"({assistant['kind']}: {text})" if text else "(status cleared)")
            continue
        where = message.get("thread")
        if where and where != thread:
            text = f"[thread {where}] {text}"
        loose = []
        for button in message.get("buttons") or []:
            buttons.append(button)
            label = f"#{len(buttons)} [{button['label']}]"
            about = unescape(str(button.get("about") or ""))
            if about and about in text:
                text = text.replace(about, f"{about}  {label}", 1)
            else:
                loose.append(label)
        if loose:
            text += "\n  " + "  ".join(loose)
        lines.append(text)
    return lines, buttons, modal


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def timer_lines(stored: Any, now: float) -> list[str]:
    """The pending timers of every scope of a ``/state`` answer, one line each."""
    if stored is None or "error" in stored:
        return [stored["error"] if stored else "no timers pending"]
    lines = []
    for scope, found in (stored.get("scopes") or {"": stored}).items():
        for timer in found.get("timers") or []:
            left = max(0, int(timer["due"] - now))
            when = time.strftime("%H:%M:%S", time.localtime(timer["due"]))
            text = f"{timer['name']}: in {left // 60}m {left % 60:02d}s ({when})"
            if timer.get("cron"):
                text += f", every {timer['cron']} ({timer.get('tz') or 'UTC'})"
            if timer.get("com"):
                text += ", until your next message"
            if timer.get("args"):
                text += " " + json.dumps(timer["args"], ensure_ascii=False)
            lines.append(f"{scope}: {text}" if scope else text)
    return lines or ["no timers pending"]


def state_lines(stored: dict[str, Any]) -> list[str]:
    """A ``/state`` answer as printed: each scope's key, version and state (a bot of one
    scope: just its key and state)."""
    scopes = stored.get("scopes") or {"": stored}
    lines = []
    for scope, found in scopes.items():
        if len(scopes) > 1:
            lines.append(f"{scope}:")
        if found.get("version") is None:
            lines.append(f"key: {found['key']} (nothing stored yet)")
            continue
        lines.append(f"key: {found['key']} (version {found['version']})")
        lines.append("state: " + json.dumps(found["state"], ensure_ascii=False))
    return lines
