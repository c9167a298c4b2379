"""An assistant's replies on Messenger and Instagram (``bot.assistant``): a ``Status`` is the
typing indicator (``sender_action: typing_on``, which Meta shows until the next message or for
about 20 s), ``Prompts`` are quick replies, a ``Title`` is dropped (no thread has one).

Prompts go on the turn's last message when it is text that carries no quick replies of its own
(a message's quick replies vanish once the next message arrives, so only the last one's can
be tapped), else in a message of their own: the prompts' ``title`` (or :data:`SUGGESTIONS`).
Tapping one sends its message back as the user's text (``Message(kind="text")``), as on Slack.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.assistant import Prompts

#: The text of a message that carries only suggested prompts.
SUGGESTIONS = "Suggestions"
#: Meta's limits: 13 quick replies, 20 characters of a title, 1,000 of a payload.
MAX_QUICK_REPLIES = 13
QUICK_TITLE = 20
QUICK_PAYLOAD = 1000
#: The key of a prompt's quick reply payload (the message it sends).
PROMPT_KEY = "prompt"

#: What a ``Status`` becomes: a sender action, not a message.
TYPING = {"sender_action": "typing_on"}


def prompt_payload(message: str) -> str:
    return json.dumps({PROMPT_KEY: message}, separators=(",", ":"))[:QUICK_PAYLOAD]


def prompt_of(payload: str) -> str | None:
    """The message of a prompt's quick reply, else ``None``."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if isinstance(data, dict) and set(data) == {PROMPT_KEY} and isinstance(data[PROMPT_KEY], str):
        return str(data[PROMPT_KEY])
    return None


def _title(text: str) -> str:
    return text if len(text) <= QUICK_TITLE else text[: QUICK_TITLE - 1] + "…"


def with_prompts(messages: list[dict[str, Any]], prompts: Sequence[Prompts]) -> None:
    """Put the turn's prompts (the last ``Prompts`` wins) on its messages (in place)."""
    if not prompts:
        return
    chosen = prompts[-1]
    quick = [
        {
            "content_type": "text",
            "title": _title(title or message),
            "payload": prompt_payload(message),
        }
        for title, message in chosen.prompts[:MAX_QUICK_REPLIES]
    ]
    if not quick:
        return
    last = next((m for m in reversed(messages) if "sender_action" not in m), None)
    if last is not None and "text" in last and "quick_replies" not in last:
        last["quick_replies"] = quick
        return
    messages.append({"text": chosen.title or SUGGESTIONS, "quick_replies": quick})
