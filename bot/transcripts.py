"""Transcripts: a real conversation, saved, as a regression test of the bot.

A turn is a pure function of the stored state and the message, so a conversation recorded
while chatting (``make run``'s inspector saves one: the *Save transcript* button, or
``GET /_inspector/transcript``) can be replayed against the current code: each message again,
in order, from the same starting state, and every turn's replies and state compared with what
was recorded. A difference is a change of behaviour, for you to accept (save a new
transcript) or fix::

    from bot.testing import replay
    assert replay(MyBot(), "tests/transcripts/lunch.json") == []

or ``make replay FILE=tests/transcripts/lunch.json``, which runs the bot the transcript names
(``source``; ``BOT`` overrides it, and a bot of another class is refused by name).

The file (JSON)::

    {"format": "chat-sessions transcript 1", "bot": "PollBot",
     "source": "examples.poll:bot", "platform": "slack", "workspace": "T0LOCAL",
     "turns": [{"user": "U0LOCAL", "conversation": "C0LOCAL", "idempotency_key": "Ev...",
                "message": {<Message.to_dict() without raw>}, "replies": [<reply dicts>],
                "state": <the first scope's state after the turn>}, ...]}

Effects are not run again: their results were recorded as the follow-up turns
(``kind: "effect"``) and are fed back as such, so a replay does no I/O; a timer's fire is a
turn (``kind: "timer"``) like any other. ``Message.raw`` is not kept (a bot that reads it
replays without it). Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "chat-sessions transcript 1"


@dataclass(frozen=True, slots=True)
class Turn:
    """One recorded turn: who, the message, and what the bot answered and kept."""

    user: str
    conversation: str
    idempotency_key: str
    message: Mapping[str, Any]
    replies: Sequence[Mapping[str, Any]] = ()
    state: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "conversation": self.conversation,
            "idempotency_key": self.idempotency_key,
            "message": dict(self.message),
            "replies": [dict(r) for r in self.replies],
            "state": self.state,
        }


@dataclass(frozen=True, slots=True)
class Transcript:
    """A recorded conversation: ``bot``, the name of the bot's class; ``source``, where it
    was loaded from (``BOT``, ``package.module:attribute``), so that a replay runs that bot."""

    bot: str
    platform: str
    workspace: str
    turns: Sequence[Turn] = field(default_factory=tuple)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT, "bot": self.bot}
        if self.source is not None:
            data["source"] = self.source
        return {
            **data,
            "platform": self.platform,
            "workspace": self.workspace,
            "turns": [t.to_dict() for t in self.turns],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")


class TranscriptError(ValueError):
    """Not a transcript this version reads; the message says why."""


def load(source: str | Path | Mapping[str, Any]) -> Transcript:
    """A transcript from a file's path or its parsed JSON.

    Raises:
        TranscriptError: not a transcript (or of another format).
    """
    data: Any = source
    if isinstance(source, str | Path):
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, ValueError) as exc:
            raise TranscriptError(f"{source}: {exc}") from None
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise TranscriptError(f"not a transcript (expected format {FORMAT!r})")
    try:
        turns = tuple(
            Turn(
                user=str(t["user"]),
                conversation=str(t["conversation"]),
                idempotency_key=str(t["idempotency_key"]),
                message=dict(t["message"]),
                replies=[dict(r) for r in t.get("replies") or []],
                state=t.get("state"),
            )
            for t in data["turns"]
        )
        recorded_from = data.get("source")
        return Transcript(
            str(data["bot"]),
            str(data["platform"]),
            str(data["workspace"]),
            turns,
            None if recorded_from is None else str(recorded_from),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TranscriptError(f"a malformed turn: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Difference:
    """Where a replay differs: turn ``turn`` (1-based), its ``what`` (``"replies"``,
    ``"state"`` or ``"error"``), as recorded and as the current code gives it."""

    turn: int
    what: str
    expected: Any
    got: Any
    said: str = ""  #: what the user did, in a few words

    def __str__(self) -> str:
        def shown(value: Any) -> str:
            return json.dumps(value, ensure_ascii=False, sort_keys=True)

        return (
            f"turn {self.turn} ({self.said}): {self.what} differ\n"
            f"  recorded: {shown(self.expected)}\n"
            f"  now:      {shown(self.got)}"
        )


def said(message: Mapping[str, Any]) -> str:
    """A message in a few words: ``text "add milk"``, ``action vote=pizza``."""
    kind = str(message.get("kind") or "text")
    if kind == "command":
        return f'{message.get("command")} "{message.get("text") or ""}"'
    if kind == "action":
        return f"action {message.get('action')}={message.get('value') or ''}"
    if kind in ("submission", "effect", "timer"):
        return f"{kind} {message.get('action')}"
    return f'{kind} "{str(message.get("text") or "")[:40]}"'


__all__ = ["FORMAT", "Difference", "Transcript", "TranscriptError", "Turn", "load", "said"]
