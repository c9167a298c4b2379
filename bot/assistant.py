"""What an assistant says besides messages: a status while it works, suggested prompts, a
thread's title. Returned among a turn's replies, each is sent once per event like any reply
(after the commit, through the same outbox: a redelivered event sends none of them again).

============  =======================================  ========================================
kind          Slack (an assistant thread)              Messenger / Instagram
============  =======================================  ========================================
``Status``    ``assistant.threads.setStatus`` (Slack   the typing indicator (``sender_action:
              clears it when the app replies)          typing_on``; Meta clears it on the next
                                                       message or after about 20 s)
``Prompts``   ``assistant.threads.setSuggestedPrompts`` quick replies: on the turn's last
              (at most 4 prompts)                      message, or a message of their own
                                                       (``title``, or "Suggestions") when the
                                                       turn has no message to carry them
``Title``     ``assistant.threads.setTitle``           ignored (no thread has a title)
============  =======================================  ========================================

On Slack they need a thread: in a message outside any thread (a slash command, a button on a
top-level message) the status and the title are dropped and the prompts are sent as buttons
of a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Slack shows at most 4 suggested prompts; Messenger at most 13 quick replies.
MAX_PROMPTS = 4


@dataclass(frozen=True, slots=True)
class Status:
    """The assistant's status in its thread while it works ("is thinking..."): ``text``, and
    ``loading`` messages Slack rotates through. Cleared by the next reply (``Status("")``
    clears it at once)."""

    text: str
    loading: Sequence[str] = ()

    kind = "status"

    def __post_init__(self) -> None:
        object.__setattr__(self, "loading", tuple(str(m) for m in self.loading))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "loading": list(self.loading)}


@dataclass(frozen=True, slots=True)
class Prompts:
    """Suggested prompts: ``prompts`` are ``(title, message)`` pairs; tapping one sends its
    message as the user's (a ``Message(kind="text")`` like any). ``title``: the line above
    them (Slack's default: "Try these prompts:")."""

    prompts: Sequence[tuple[str, str]]
    title: str = ""

    kind = "prompts"

    def __post_init__(self) -> None:
        pairs = []
        for pair in self.prompts:
            if isinstance(pair, str) or len(pair) != 2:
                raise TypeError(f"a prompt is a (title, message) pair, not {pair!r:.60}")
            pairs.append((str(pair[0]), str(pair[1])))
        object.__setattr__(self, "prompts", tuple(pairs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "prompts": [{"title": t, "message": m} for t, m in self.prompts],
        }


@dataclass(frozen=True, slots=True)
class Title:
    """The title of the assistant thread (Slack's history list); ignored elsewhere."""

    text: str

    kind = "title"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text}


AssistantReply = Status | Prompts | Title
ASSISTANT_KINDS: tuple[type, ...] = (Status, Prompts, Title)


def assistant_from_dict(data: Mapping[str, Any]) -> AssistantReply | None:
    """The assistant reply a ``to_dict()`` gave; ``None`` for another kind."""
    kind = data.get("kind")
    if kind == "status":
        return Status(str(data.get("text") or ""), tuple(data.get("loading") or ()))
    if kind == "prompts":
        return Prompts(
            tuple(
                (str(p.get("title") or ""), str(p.get("message") or ""))
                for p in data.get("prompts") or ()
                if isinstance(p, Mapping)
            ),
            title=str(data.get("title") or ""),
        )
    if kind == "title":
        return Title(str(data.get("text") or ""))
    return None
