"""What a user did, as the bot sees it: one platform-neutral, read-only :class:`Message`.

The edges build it from Slack and Messenger payloads; the bot never parses a platform dict,
but ``raw`` keeps the original payload (read-only) for what this type does not cover.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: ``"slack"``, ``"messenger"``, ``"instagram"``, or a platform an adapter added (``""``: a
#: message built by hand, of no platform).
Platform = str
#: ``text``: typed text (a DM, a Messenger message, a Slack file share); ``command``: a slash
#: command (``command`` names it, ``text`` is what follows it); ``action``: a button, a quick
#: reply or a postback (``action``/``value``); ``submission``: a Slack modal submitted
#: (``action`` is the modal's id, ``form`` its values); ``effect``: the result of an effect
#: the bot asked for, coming back as a follow-up turn (``action`` is the effect's name,
#: ``result`` or ``error`` what happened); ``user_deleted``: only for a bot with a Slack
#: channel's state (``scope = "channel"``): ``user`` was deleted and wrote to this channel,
#: remove what the state keeps of them (the turn's replies and effects are dropped);
#: ``timer``: a :class:`~bot.timers.Timer` the bot set is due (``action`` is its name,
#: ``payload`` its args, ``value`` its id, ``time`` when it was due); ``thread_started``: a user
#: opened a Slack assistant thread (``thread`` its root, ``payload`` its context: ``channel``
#: the channel the user was viewing, ``team``, ``enterprise``); ``thread_context``: the user of an
#: assistant thread moved to another channel (``payload`` as for ``thread_started``).
Kind = Literal[
    "text",
    "command",
    "action",
    "submission",
    "effect",
    "user_deleted",
    "timer",
    "thread_started",
    "thread_context",
]
KINDS: tuple[str, ...] = (
    "text",
    "command",
    "action",
    "submission",
    "effect",
    "user_deleted",
    "timer",
    "thread_started",
    "thread_context",
)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the user sent: Messenger ``image``/``video``/``audio``/``file`` attachments, Slack
    files. ``url`` is the platform's (Slack's ``url_private`` needs the bot token to fetch)."""

    kind: str
    url: str
    name: str = ""
    mime: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "url": self.url, "name": self.name, "mime": self.mime}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attachment:
        return cls(
            kind=str(data.get("kind") or "file"),
            url=str(data.get("url") or ""),
            name=str(data.get("name") or ""),
            mime=str(data.get("mime") or ""),
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One thing a user did, in one conversation.

    Attributes:
        text: what the user typed (for a command, the text after it).
        action: the id of the button, quick reply, postback or modal (or the effect's name).
        value: the button's value (or a quick reply's / postback's value).
        kind: see :data:`Kind`.
        platform: ``"slack"``, ``"messenger"``, ``"instagram"`` or ``"whatsapp"``.
        workspace: the Slack team id, or the Messenger page id.
        conversation: the Slack channel id, or the Messenger page id.
        user: the Slack user id, or the Messenger page-scoped id (PSID).
        time: when it happened, in epoch seconds, at the platform's resolution.
        command: the slash command (``"/todo"``), for ``kind == "command"``.
        attachments: files the user sent.
        form: a submitted modal's values, by field name.
        payload: a Messenger quick reply's or postback's payload, as sent; a timer's args.
        result: an effect's return value (``kind == "effect"``).
        error: why an effect failed (``kind == "effect"``), else ``None``.
        thread: Slack: the ``ts`` of the root of the thread the message is in (``thread_ts``);
            ``None`` for a top-level message and on platforms without threads.
        raw: the platform's payload, read-only (secrets such as Slack's legacy ``token`` are
            removed). An escape hatch: code that reads it is platform-specific.
    """

    text: str = ""
    action: str | None = None
    value: str | None = None
    kind: Kind = "text"
    platform: Platform = ""
    workspace: str = ""
    conversation: str = ""
    user: str = ""
    time: float | None = None
    command: str | None = None
    attachments: tuple[Attachment, ...] = ()
    form: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    payload: str | Mapping[str, Any] | None = None
    result: Any = None
    error: str | None = None
    thread: str | None = None
    raw: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    def __post_init__(self) -> None:
        # Read-only all the way down: a turn may run more than once for one event, so it must
        # not be able to change what the next run sees.
        object.__setattr__(self, "form", freeze(dict(self.form)))
        object.__setattr__(self, "raw", freeze(self.raw))
        object.__setattr__(self, "result", freeze(self.result))
        object.__setattr__(self, "payload", freeze(self.payload))
        object.__setattr__(self, "attachments", tuple(self.attachments))

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible (a deferred job, a dead letter's replay payload)."""
        return {
            "text": self.text,
            "action": self.action,
            "value": self.value,
            "kind": self.kind,
            "platform": self.platform,
            "workspace": self.workspace,
            "conversation": self.conversation,
            "user": self.user,
            "time": self.time,
            "command": self.command,
            "attachments": [a.to_dict() for a in self.attachments],
            "form": thaw(self.form),
            "payload": thaw(self.payload),
            "result": thaw(self.result),
            "error": self.error,
            "thread": self.thread,
            "raw": thaw(self.raw),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        kind = data.get("kind") or "text"
        return cls(
            text=str(data.get("text") or ""),
            action=data.get("action"),
            value=data.get("value"),
            kind=kind if kind in KINDS else "text",  # type: ignore[arg-type]
            platform=data.get("platform") or "",
            workspace=str(data.get("workspace") or ""),
            conversation=str(data.get("conversation") or ""),
            user=str(data.get("user") or ""),
            time=data.get("time"),
            command=data.get("command"),
            attachments=tuple(Attachment.from_dict(a) for a in data.get("attachments") or ()),
            form=dict(data.get("form") or {}),
            payload=data.get("payload"),
            result=data.get("result"),
            error=data.get("error"),
            thread=_thread(data.get("thread")),
            raw=data.get("raw") or {},
        )


def _thread(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def freeze(value: Any) -> Any:
    """A read-only copy: mappings become ``MappingProxyType``, lists become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The JSON-compatible copy of a :func:`freeze` d value (dicts and lists again)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value
