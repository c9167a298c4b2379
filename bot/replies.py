"""What a bot says back. Each reply kind renders on both platforms; where one platform cannot
show something, it gets a documented fallback instead of an error:

============  ====================================  =========================================
kind          Slack                                 Messenger
============  ====================================  =========================================
``Reply``     a message (buttons as Block Kit       text (split under 2,000 characters),
              buttons; ``blocks`` passed through;   buttons as quick replies (at most 13), or
              ``visibility`` ephemeral/in_channel)  a button template (``persistent``, or a
              link button; at most 3, else quick
              replies); ``blocks`` ignored: the text
              is shown
``Cards``     sections with image and buttons       a generic template (at most 10 cards of
                                                    3 buttons; longer titles are cut)
``Media``     an image block, or a link for other   an attachment by URL, then the caption
              kinds
``Modal``     ``views.open`` with the event's       ``fallback`` as text (Messenger has no
              trigger id (commands and buttons);    forms: ask field by field instead)
              without one, ``fallback`` as text
``FormErrors``  answering a modal's submission:     the messages as text
              the modal stays open with each
              message under its field; elsewhere
              the messages as text
============  ====================================  =========================================

``Template`` (an approved WhatsApp message template) is WhatsApp's alone: on WhatsApp it is
the only message that reaches a user whose last message is older than 24 hours; returned in a
turn of another platform it is a ``BotTypeError``. On WhatsApp, ``Reply`` is text (split at
4,096 characters), its buttons reply buttons (3 at most, titles of 20 characters; more, or
longer, a list message of up to 10 rows); ``Media`` a media message by link; ``Cards`` an image
message per card with its buttons; ``Modal`` its ``fallback``.

A bot may also return a plain ``str``: it is ``Reply(text)``. An assistant's ``Status``,
``Prompts`` and ``Title`` (``bot.assistant``) are replies too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.assistant import ASSISTANT_KINDS, Prompts, Status, Title, assistant_from_dict

Visibility = Literal["ephemeral", "in_channel"]


@dataclass(frozen=True, slots=True)
class Button:
    """A button (Slack), quick reply or postback button (Messenger).

    ``action`` must be one the bot declares (``Bot.actions`` or ``Bot.action_prefix``): pressing
    it comes back as ``Message(kind="action", action=..., value=...)``. ``url`` makes a link
    button instead (nothing comes back). ``line``: a line of the reply's text the button acts
    on (Slack puts the button beside that line).
    """

    label: str
    action: str = ""
    value: str = ""
    line: str | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "action": self.action,
            "value": self.value,
            "line": self.line,
            "url": self.url,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Button:
        return cls(
            label=str(data["label"]),
            action=str(data.get("action") or ""),
            value=str(data.get("value") or ""),
            line=data.get("line"),
            url=data.get("url"),
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """A message: text with optional buttons.

    Args:
        text: the message (Slack mrkdwn is escaped: user text never becomes a mention).
        buttons: buttons (Slack) or quick replies / template buttons (Messenger).
        blocks: Slack Block Kit blocks, passed through as given (``text`` is then Slack's
            notification text and what Messenger shows; blocks Slack refuses as invalid are
            dropped and the text is sent alone).
        visibility: Slack only: ``"ephemeral"`` (only the user sees it) or ``"in_channel"``;
            default: ephemeral for slash commands and buttons, a normal message in DMs.
        persistent: Messenger only: buttons as a button template that stays, instead of
            quick replies that vanish once one is tapped.
        replace: answering a button press on Slack, replace the message that carried the
            button (a poll's tally, say) instead of posting a new one; elsewhere (and on
            Messenger, which cannot edit a message) a new message.
        in_thread: Slack only: answering a top-level message, start a thread under it (a
            reply to a message already in a thread always goes into that thread); ignored
            where there is no message to thread under (a slash command) and elsewhere.
    """

    text: str
    buttons: Sequence[Button] = ()
    blocks: Sequence[Mapping[str, Any]] | None = None
    visibility: Visibility | None = None
    persistent: bool = False
    replace: bool = False
    in_thread: bool = False

    kind = "reply"

    def __post_init__(self) -> None:
        object.__setattr__(self, "buttons", tuple(self.buttons))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(self.blocks))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "text": self.text,
            "buttons": [b.to_dict() for b in self.buttons],
        }
        if self.blocks is not None:
            data["blocks"] = [dict(b) for b in self.blocks]
        if self.visibility:
            data["visibility"] = self.visibility
        if self.persistent:
            data["persistent"] = True
        if self.replace:
            data["replace"] = True
        if self.in_thread:
            data["in_thread"] = True
        return data


@dataclass(frozen=True, slots=True)
class Card:
    """One card of :class:`Cards`: a title, optional subtitle and image, up to 3 buttons."""

    title: str
    subtitle: str = ""
    image_url: str | None = None
    buttons: Sequence[Button] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "buttons", tuple(self.buttons))

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "image_url": self.image_url,
            "buttons": [b.to_dict() for b in self.buttons],
        }


@dataclass(frozen=True, slots=True)
class Cards:
    """A row of cards: Messenger's generic template, Slack sections. ``text`` comes first."""

    cards: Sequence[Card]
    text: str = ""

    kind = "cards"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cards", tuple(self.cards))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "cards": [c.to_dict() for c in self.cards]}


@dataclass(frozen=True, slots=True)
class Media:
    """A file by URL (``kind``: image, video, audio or file), with an optional caption."""

    url: str
    media: Literal["image", "video", "audio", "file"] = "image"
    caption: str = ""

    kind = "media"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "media": self.media, "caption": self.caption}


@dataclass(frozen=True, slots=True)
class Field:
    """One input of a :class:`Modal`: free text (``multiline`` for long text) or, with
    ``options``, a choice of one."""

    name: str
    label: str
    multiline: bool = False
    optional: bool = False
    options: Sequence[str] = ()
    placeholder: str = ""
    initial: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "multiline": self.multiline,
            "optional": self.optional,
            "options": list(self.options),
            "placeholder": self.placeholder,
            "initial": self.initial,
        }


@dataclass(frozen=True, slots=True)
class Modal:
    """Open a Slack modal (``views.open``) with a form. Submitting it comes back as
    ``Message(kind="submission", action=<action>, form={field name: value})`` on the same
    conversation, so ``action`` must be one the bot declares.

    Needs the trigger id of a slash command or a button press, which Slack honours for 3 s:
    a bot returns it from a fast turn. Without one (a DM, a slow turn, Messenger), the user
    gets ``fallback`` as text. ``view``: a whole Block Kit view to send instead of the form
    built from ``fields`` (its ``callback_id`` and ``private_metadata`` are set for routing).
    """

    action: str
    title: str
    fields: Sequence[Field] = ()
    submit: str = "Submit"
    fallback: str = "This needs a form that only Slack can show."
    view: Mapping[str, Any] | None = None

    kind = "modal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "action": self.action,
            "title": self.title,
            "fields": [f.to_dict() for f in self.fields],
            "submit": self.submit,
            "fallback": self.fallback,
            "view": None if self.view is None else dict(self.view),
        }


@dataclass(frozen=True, slots=True)
class FormErrors:
    """The answer to a Slack modal's submission that keeps the modal open, with a message
    under each named field (``{field name: message}``): how a bot refuses a form. Anywhere
    else (a slow turn, Messenger) the messages are sent as text."""

    errors: Mapping[str, str]

    kind = "form_errors"

    def __post_init__(self) -> None:
        object.__setattr__(self, "errors", dict(self.errors))

    @property
    def text(self) -> str:
        return "\n".join(f"{name}: {message}" for name, message in self.errors.items())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "errors": dict(self.errors)}


@dataclass(frozen=True, slots=True)
class Template:
    """WhatsApp only: an approved message template, by ``name`` and ``language`` (a code such
    as ``"en_US"``), with its body's ``params`` in order. Outside the 24-hour customer-service
    window (the user's last message older than 24 h: a timer's reminder, a slow effect's
    answer) it is the only message WhatsApp delivers. In a turn of another platform it is a
    ``BotTypeError``."""

    name: str
    language: str = "en_US"
    params: Sequence[str] = ()

    kind = "template"

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(str(p) for p in self.params))

    @property
    def fallback(self) -> str:
        """Never shown (another platform refuses a template before rendering): its name."""
        return f"[template {self.name}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "language": self.language,
            "params": list(self.params),
        }


#: WhatsApp: the action of the follow-up turn that tells a bot its replies were refused
#: because the user's last message is older than 24 hours:
#: ``Message(kind="effect", action=WINDOW_CLOSED, error=WINDOW_ERROR, payload={"unsent":
#: [<each refused reply, as its to_dict()>]})``. Answer it with a :class:`Template`.
WINDOW_CLOSED = "whatsapp.window"
WINDOW_ERROR = (
    "OutsideWindow: the user's last message is older than 24 hours (WhatsApp's customer-"
    "service window is closed); only a Template reaches them now"
)
#: Seconds after a user's last message within which WhatsApp delivers free-form messages.
WINDOW_SECONDS = 24 * 3600

AnyReply = Reply | Cards | Media | Modal | FormErrors | Template | Status | Prompts | Title
REPLY_KINDS: tuple[type, ...] = (
    Reply, Cards, Media, Modal, FormErrors, Template, *ASSISTANT_KINDS,
)  # fmt: skip


def _buttons(data: Sequence[Mapping[str, Any]] | None) -> tuple[Button, ...]:
    return tuple(Button.from_dict(b) for b in data or ())


def reply_from_dict(data: Mapping[str, Any]) -> AnyReply:
    """The reply a ``to_dict()`` gave (what is stored and what the edges render).

    Raises:
        TypeError: an unknown ``kind``.
    """
    kind = data.get("kind", "reply")
    if kind == "reply":
        blocks = data.get("blocks")
        return Reply(
            text=str(data.get("text") or ""),
            buttons=_buttons(data.get("buttons")),
            blocks=None if blocks is None else tuple(blocks),
            visibility=data.get("visibility"),
            persistent=bool(data.get("persistent")),
            replace=bool(data.get("replace")),
            in_thread=bool(data.get("in_thread")),
        )
    if kind == "cards":
        return Cards(
            cards=tuple(
                Card(
                    title=str(c.get("title") or ""),
                    subtitle=str(c.get("subtitle") or ""),
                    image_url=c.get("image_url"),
                    buttons=_buttons(c.get("buttons")),
                )
                for c in data.get("cards") or ()
            ),
            text=str(data.get("text") or ""),
        )
    if kind == "media":
        return Media(url=str(data["url"]), media=data.get("media") or "image",
                     caption=str(data.get("caption") or ""))  # fmt: skip
    if kind == "modal":
        return Modal(
            action=str(data["action"]),
            title=str(data.get("title") or ""),
            fields=tuple(
                Field(
                    name=str(f["name"]),
                    label=str(f.get("label") or f["name"]),
                    multiline=bool(f.get("multiline")),
                    optional=bool(f.get("optional")),
                    options=tuple(f.get("options") or ()),
                    placeholder=str(f.get("placeholder") or ""),
                    initial=str(f.get("initial") or ""),
                )
                for f in data.get("fields") or ()
            ),
            submit=str(data.get("submit") or "Submit"),
            fallback=str(data.get("fallback") or ""),
            view=data.get("view"),
        )
    if kind == "form_errors":
        return FormErrors({str(k): str(v) for k, v in (data.get("errors") or {}).items()})
    assistant = assistant_from_dict(data)
    if assistant is not None:
        return assistant
    if kind == "template":
        return Template(name=str(data["name"]), language=str(data.get("language") or "en_US"),
                        params=tuple(str(p) for p in data.get("params") or ()))  # fmt: skip
    raise TypeError(f"unknown reply kind {kind!r}")


def buttons_of(reply: AnyReply) -> tuple[Button, ...]:
    """Every button a reply carries (a card's included)."""
    if isinstance(reply, Reply):
        return tuple(reply.buttons)
    if isinstance(reply, Cards):
        return tuple(b for card in reply.cards for b in card.buttons)
    return ()
