"""Pure rendering of platform-neutral replies into Send API message objects (the inbound side
is ``handlers.messenger.parse``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.assistant import Prompts, Status
from bot.replies import AnyReply, Button, Cards, FormErrors, Media, Modal, Reply
from handlers.messenger import assistant
from handlers.messenger.parse import encode_payload
from handlers.text import pieces

TEXT_LIMIT = 2000  # Send API: text must be under 2,000 characters
MAX_QUICK_REPLIES = 13
QUICK_REPLY_TITLE = 20
MAX_TEMPLATE_BUTTONS = 3  # button and generic templates: at most 3 buttons
BUTTON_TITLE = 20
TEMPLATE_TEXT = 640  # a button template's text
MAX_CARDS = 10  # a generic template's elements
CARD_TEXT = 80  # a card's title and subtitle


def _chunks(text: str) -> list[str]:
    """Text in pieces under the Send API's limit."""
    return pieces(text, TEXT_LIMIT - 1)


def _title(label: str, line: str | None) -> str:
    if line:
        number = line.split(".", 1)[0]
        label = f"{label} {number}" if number.isdecimal() else label
    return label[:QUICK_REPLY_TITLE]


def _template_button(button: Button) -> dict[str, Any]:
    if button.url:
        return {"type": "web_url", "url": button.url, "title": button.label[:BUTTON_TITLE]}
    return {
        "type": "postback",
        "title": _title(button.label, button.line)[:BUTTON_TITLE],
        "payload": encode_payload(button.action, button.value),
    }


def _reply(reply: Reply) -> list[dict[str, Any]]:
    buttons = reply.buttons
    links = [b for b in buttons if b.url]
    template = (reply.persistent or links) and len(buttons) <= MAX_TEMPLATE_BUTTONS
    if template and len(reply.text) <= TEMPLATE_TEXT:
        payload = {
            "template_type": "button",
            "text": reply.text or " ",
            "buttons": [_template_button(b) for b in buttons],
        }
        return [{"attachment": {"type": "template", "payload": payload}}]
    text = reply.text
    if links:  # quick replies cannot open a link: the links go in the text
        text += "".join(f"\n{b.label}: {b.url}" for b in links)
    out: list[dict[str, Any]] = [{"text": piece} for piece in _chunks(text)]
    actions = [b for b in buttons if not b.url]
    if actions:
        out[-1]["quick_replies"] = [
            {
                "content_type": "text",
                "title": _title(b.label, b.line),
                "payload": encode_payload(b.action, b.value),
            }
            for b in actions[:MAX_QUICK_REPLIES]
        ]
    return out


def _cards(reply: Cards) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = (
        [{"text": piece} for piece in _chunks(reply.text)] if reply.text else []
    )
    elements = []
    for card in reply.cards[:MAX_CARDS]:
        element: dict[str, Any] = {"title": card.title[:CARD_TEXT] or " "}
        if card.subtitle:
            element["subtitle"] = card.subtitle[:CARD_TEXT]
        if card.image_url:
            element["image_url"] = card.image_url
        if card.buttons:
            element["buttons"] = [_template_button(b) for b in card.buttons[:MAX_TEMPLATE_BUTTONS]]
        elements.append(element)
    if elements:
        payload = {"template_type": "generic", "elements": elements}
        out.append({"attachment": {"type": "template", "payload": payload}})
    return out


def render(replies: Sequence[AnyReply]) -> list[dict[str, Any]]:
    """Send API ``message`` objects, one per message to send, in order (see
    :mod:`bot.replies` for each kind's rendering and fallbacks)."""
    messages: list[dict[str, Any]] = []
    for reply in replies:
        if isinstance(reply, Reply):
            messages.extend(_reply(reply))
        elif isinstance(reply, Cards):
            messages.extend(_cards(reply))
        elif isinstance(reply, Media):
            payload = {"url": reply.url, "is_reusable": True}
            messages.append({"attachment": {"type": reply.media, "payload": payload}})
            if reply.caption:
                messages.extend({"text": piece} for piece in _chunks(reply.caption))
        elif isinstance(reply, FormErrors):
            messages.extend({"text": piece} for piece in _chunks(reply.text))
        elif isinstance(reply, Modal):  # Messenger has no forms
            messages.extend({"text": piece} for piece in _chunks(reply.fallback))
        elif isinstance(reply, Status):
            messages.append(dict(assistant.TYPING))
    assistant.with_prompts(messages, [r for r in replies if isinstance(r, Prompts)])
    return messages
