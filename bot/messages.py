"""Platform-neutral values between the edge and the bot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """What a user did: typed ``text``, or pressed a button (``action`` with its ``value``)."""

    text: str = ""
    action: str | None = None
    value: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "action": self.action, "value": self.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            text=str(data.get("text") or ""), action=data.get("action"), value=data.get("value")
        )


@dataclass(frozen=True, slots=True)
class Button:
    """A button (Slack) or quick reply (Messenger). ``line``: the line of text it acts on."""

    label: str
    action: str
    value: str
    line: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "action": self.action, "value": self.value, "line": self.line}


@dataclass(frozen=True, slots=True)
class Reply:
    """One message from the bot."""

    text: str
    buttons: tuple[Button, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "buttons": [b.to_dict() for b in self.buttons]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        return cls(
            text=str(data["text"]),
            buttons=tuple(
                Button(b["label"], b["action"], b["value"], b.get("line"))
                for b in data.get("buttons", [])
            ),
        )
