"""Pure rendering of the bot's replies as Cloud API message objects (the part of ``POST
/<phone_number_id>/messages`` after ``messaging_product``, ``recipient_type`` and ``to``).

=============  =============================================================================
``Reply``      text, split at 4,096 characters (at line breaks); its buttons as interactive
               reply buttons on the last piece (3 at most, titles cut to 20 characters, the
               body to 1,024), more than 3 as a list message (10 rows at most, titles cut to
               24 characters); link buttons as lines of the text (the preview on)
``Cards``      the text, then per card an image message (its title and subtitle the caption)
               or text, and the card's buttons as reply buttons
``Media``      an image, video, audio or document message by link; the caption with it
               (audio takes none: then a text after it)
``Template``   a template message: ``name``, ``language.code``, the body's parameters
``Modal``      its ``fallback`` as text (WhatsApp has no forms here); ``FormErrors`` as text
``Prompts``    an assistant's suggested prompts as reply buttons (or a list) under its title
               (or "Suggestions"): a tap sends the prompt's message as the user's text
``Status``     nothing (a ``Title`` neither): WhatsApp shows no status of ours
=============  =============================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.assistant import Prompts, Status, Title
from bot.replies import AnyReply, Button, Cards, FormErrors, Media, Modal, Reply, Template
from handlers.text import pieces
from handlers.whatsapp.parse import encode_payload, prompt_id

TEXT_LIMIT = 4096  # a text message's body
BODY_LIMIT = 1024  # an interactive message's body
CAPTION_LIMIT = 1024
MAX_BUTTONS = 3  # reply buttons
BUTTON_TITLE = 20
BUTTON_ID = 256
MAX_ROWS = 10  # a list message's rows, all sections together
ROW_TITLE = 24
ROW_ID = 200
LIST_BUTTON = "Choose"
#: A list row's title from a button about a numbered line: "Done 2".
MEDIA_TYPES = {"image": "image", "video": "video", "audio": "audio", "file": "document"}


def text_message(text: str, *, preview: bool = False) -> dict[str, Any]:
    return {"type": "text", "text": {"body": text, "preview_url": preview}}


def _title(button: Button, limit: int) -> str:
    label = button.label
    if button.line:
        number = button.line.split(".", 1)[0]
        label = f"{label} {number}" if number.isdecimal() else label
    return (label or " ")[:limit]


#: The body of a message that carries only suggested prompts.
SUGGESTIONS = "Suggestions"
#: A prompt's button: its action (the id is the prompt's message, ``parse.prompt_id``).
PROMPT = "\x00prompt"


def _id(button: Button, limit: int) -> str:
    # An id longer than WhatsApp takes is cut: its tap then arrives as the title's text.
    if button.action == PROMPT:
        return prompt_id(button.value)[:limit]
    return encode_payload(button.action, button.value)[:limit]


def _prompts(reply: Prompts) -> list[dict[str, Any]]:
    buttons = [Button(title or message, PROMPT, message) for title, message in reply.prompts]
    return [_interactive(reply.title or SUGGESTIONS, buttons[:MAX_ROWS])] if buttons else []


def _interactive(body: str, buttons: Sequence[Button]) -> dict[str, Any]:
    """Reply buttons when they fit (3, titles of 20), else a list message (10 rows)."""
    fits = len(buttons) <= MAX_BUTTONS and all(len(_title(b, 99)) <= BUTTON_TITLE for b in buttons)
    if fits:
        action: dict[str, Any] = {
            "buttons": [
                {
                    "type": "reply",
                    "reply": {"id": _id(b, BUTTON_ID), "title": _title(b, BUTTON_TITLE)},
                }
                for b in buttons
            ]
        }
        return {"type": "interactive", "interactive": {"type": "button", "body": {"text": body},
                                                       "action": action}}  # fmt: skip
    rows = [{"id": _id(b, ROW_ID), "title": _title(b, ROW_TITLE)} for b in buttons[:MAX_ROWS]]
    action = {"button": LIST_BUTTON, "sections": [{"title": LIST_BUTTON, "rows": rows}]}
    return {"type": "interactive", "interactive": {"type": "list", "body": {"text": body},
                                                   "action": action}}  # fmt: skip


def _with_buttons(text: str, buttons: Sequence[Button]) -> list[dict[str, Any]]:
    links = [b for b in buttons if b.url]
    if links:  # no reply button opens a link: the links go in the text, previewed
        text += "".join(f"\n{b.label}: {b.url}" for b in links)
    actions = [b for b in buttons if not b.url]
    chunks = pieces(text, TEXT_LIMIT)
    if not actions:
        return [text_message(piece, preview=bool(links)) for piece in chunks]
    last = pieces(chunks.pop(), BODY_LIMIT)  # an interactive body takes 1,024
    chunks.extend(last[:-1])
    out = [text_message(piece, preview=bool(links)) for piece in chunks]
    out.append(_interactive(last[-1], actions))
    return out


def _media(reply: Media) -> list[dict[str, Any]]:
    kind = MEDIA_TYPES.get(reply.media, "document")
    media: dict[str, Any] = {"link": reply.url}
    out = [{"type": kind, kind: media}]
    if reply.caption and kind != "audio" and len(reply.caption) <= CAPTION_LIMIT:
        media["caption"] = reply.caption
    elif reply.caption:
        out.extend(text_message(piece) for piece in pieces(reply.caption, TEXT_LIMIT))
    return out


def _cards(reply: Cards) -> list[dict[str, Any]]:
    out = [text_message(piece) for piece in pieces(reply.text, TEXT_LIMIT)] if reply.text else []
    for card in reply.cards:
        words = "\n".join(part for part in (card.title, card.subtitle) if part) or " "
        if card.image_url:
            out.extend(_media(Media(card.image_url, "image", words)))
            if card.buttons:
                out.extend(_with_buttons(card.title or " ", card.buttons))
        else:
            out.extend(_with_buttons(words, card.buttons))
    return out


def template_message(reply: Template) -> dict[str, Any]:
    template: dict[str, Any] = {"name": reply.name, "language": {"code": reply.language}}
    if reply.params:
        parameters = [{"type": "text", "text": p} for p in reply.params]
        template["components"] = [{"type": "body", "parameters": parameters}]
    return {"type": "template", "template": template}


def render(replies: Sequence[AnyReply]) -> list[dict[str, Any]]:
    """Message objects, one per message to send, in the bot's order."""
    out: list[dict[str, Any]] = []
    for reply in replies:
        if isinstance(reply, Reply):
            out.extend(_with_buttons(reply.text, reply.buttons))
        elif isinstance(reply, Template):
            out.append(template_message(reply))
        elif isinstance(reply, Cards):
            out.extend(_cards(reply))
        elif isinstance(reply, Media):
            out.extend(_media(reply))
        elif isinstance(reply, FormErrors):
            out.extend(text_message(piece) for piece in pieces(reply.text, TEXT_LIMIT))
        elif isinstance(reply, Modal):  # no forms here
            out.extend(text_message(piece) for piece in pieces(reply.fallback, TEXT_LIMIT))
        elif isinstance(reply, Prompts):
            out.extend(_prompts(reply))
        elif isinstance(reply, Status | Title):
            continue  # nothing WhatsApp shows
    return out


def free_form(message: dict[str, Any]) -> bool:
    """Whether WhatsApp delivers it only within the 24-hour customer-service window (all but
    a template)."""
    return message.get("type") != "template"
