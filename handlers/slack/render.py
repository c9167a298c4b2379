"""Pure rendering of platform-neutral replies into Slack: Block Kit messages, a modal's view, a
submission's form errors (the inbound side is ``handlers.slack.parse``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.assistant import ASSISTANT_KINDS
from bot.replies import AnyReply, Button, Cards, FormErrors, Media, Modal, Reply
from handlers.slack.parse import modal_metadata
from handlers.text import pieces
from sessions.keys import ConversationKey

#: Block Kit allows 50 blocks per message; keep room for the header and an overflow note.
MAX_ITEM_BLOCKS = 45
SECTION_LIMIT = 3000


# -- outgoing: replies into Block Kit ----------------------------------------------------------


def escape(text: str) -> str:
    """Slack's three control characters: user text must not become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sections(text: str) -> list[dict[str, Any]]:
    """``text`` as sections of at most ``SECTION_LIMIT`` characters, split at line breaks:
    a long reply becomes more blocks, never a cut one."""
    return [_section(piece) for piece in pieces(text, SECTION_LIMIT)]


def _section(text: str, accessory: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT] or " "},
    }
    if accessory:
        block["accessory"] = accessory
    return block


def _button(button: Button, index: int = 0) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": button.label[:75] or " "},
    }
    if button.url:
        element["url"] = button.url[:3000]
        element["action_id"] = f"link:{index}"  # pressing a link still sends an action: ignored
    else:
        element["action_id"] = button.action
        element["value"] = button.value[:2000]
    return element


def _actions(buttons: Sequence[Button]) -> dict[str, Any]:
    return {"type": "actions", "elements": [_button(b, i) for i, b in enumerate(buttons)]}


def _reply_blocks(reply: Reply) -> list[dict[str, Any]]:
    if reply.blocks is not None:
        return [dict(b) for b in reply.blocks]  # Block Kit passthrough, as the bot gave it
    blocks: list[dict[str, Any]] = []
    text = escape(reply.text)
    by_line = {escape(b.line): b for b in reply.buttons if b.line}
    loose = [b for b in reply.buttons if not b.line]
    header: list[str] = []
    items = 0
    for line in text.split("\n"):
        button = by_line.get(line)
        if button is not None and items < MAX_ITEM_BLOCKS:
            if header:
                blocks.extend(_sections("\n".join(header)))
                header = []
            blocks.append(_section(line, _button(button)))
            items += 1
        else:
            header.append(line)
    if header:
        blocks.extend(_sections("\n".join(header)))
    for start in range(0, len(loose), 25):  # an actions block holds 25 elements
        blocks.append(_actions(loose[start : start + 25]))
    return blocks


def _cards_blocks(reply: Cards) -> list[dict[str, Any]]:
    blocks = [_section(escape(reply.text))] if reply.text else []
    for card in reply.cards:
        text = f"*{escape(card.title)}*" + (f"\n{escape(card.subtitle)}" if card.subtitle else "")
        image = None
        if card.image_url:
            image = {
                "type": "image",
                "image_url": card.image_url,
                "alt_text": card.title[:2000] or "image",
            }
        blocks.append(_section(text, image))
        if card.buttons:
            blocks.append(_actions(card.buttons))
    return blocks


def _media_blocks(reply: Media) -> list[dict[str, Any]]:
    if reply.media == "image":
        block: dict[str, Any] = {
            "type": "image",
            "image_url": reply.url,
            "alt_text": reply.caption[:2000] or "image",
        }
        return [block, *([_section(escape(reply.caption))] if reply.caption else [])]
    label = escape(reply.caption or reply.url.rsplit("/", 1)[-1] or reply.media)
    return [_section(f"<{reply.url}|{label}>")]


def _fallback_text(reply: AnyReply) -> str:
    if isinstance(reply, Reply):
        return escape(reply.text)
    if isinstance(reply, Cards):
        return escape(reply.text or " / ".join(c.title for c in reply.cards))
    if isinstance(reply, Media):
        return escape(reply.caption or reply.url)
    if isinstance(reply, FormErrors):
        return escape(reply.text)
    if isinstance(reply, Modal):
        return escape(reply.fallback)
    return ""  # an assistant's status, prompts or title: not a message


def _blocks(reply: AnyReply) -> list[dict[str, Any]]:
    if isinstance(reply, Reply):
        return _reply_blocks(reply)
    if isinstance(reply, Cards):
        return _cards_blocks(reply)
    if isinstance(reply, Media):
        return _media_blocks(reply)
    if isinstance(reply, FormErrors):  # not answering a submission: the messages as text
        return [_section(escape(reply.text))]
    if isinstance(reply, Modal):  # a modal that cannot open: its fallback
        return [_section(escape(reply.fallback))]
    return []


#: Slack's limits for one message: blocks, and characters of its ``text``.
MAX_BLOCKS = 50
MAX_TEXT = 40000


def render(replies: Sequence[AnyReply], *, visibility: str | None = None) -> list[dict[str, Any]]:
    """Replies as Slack messages, in order: ``text`` (the notification fallback), ``blocks``,
    and ``visibility`` (``"ephemeral"``, ``"in_channel"`` or ``None`` for a normal message);
    ``replace`` when it replaces the message whose button was pressed.

    Consecutive replies of one visibility share a message while their blocks fit (50); a
    reply that does not fit starts the next message, and one longer than a message becomes
    several, so nothing is cut. A reply's own ``visibility`` wins over the path's default
    ``visibility``. A button whose ``line`` is part of the reply's text becomes that line's
    accessory, so each listed item carries its own button. Modals are not messages: pass
    only what is left once they are opened.
    """
    messages: list[dict[str, Any]] = []
    for reply in replies:
        if isinstance(reply, ASSISTANT_KINDS):
            continue  # set through the assistant's methods (handlers.slack.threads)
        seen = (reply.visibility if isinstance(reply, Reply) else None) or visibility
        replace = isinstance(reply, Reply) and reply.replace
        blocks = _blocks(reply)
        text = _fallback_text(reply)
        current = messages[-1] if messages else None
        if (
            current is None
            or current["visibility"] != seen
            or current.get("replace", False) != replace
            or len(current["blocks"]) + len(blocks) > MAX_BLOCKS
        ):
            # A new message; a reply of more blocks than one message holds becomes several.
            for start in range(0, max(len(blocks), 1), MAX_BLOCKS):
                part = blocks[start : start + MAX_BLOCKS]
                message: dict[str, Any] = {"text": text, "blocks": part, "visibility": seen}
                if replace and start == 0:
                    message["replace"] = True
                messages.append(message)
            continue
        current["text"] = f"{current['text']}\n\n{text}" if current["text"] else text
        current["blocks"].extend(blocks)
    for message in messages:
        # ``text`` is the notification's fallback (the blocks carry the content): its cut
        # loses nothing the user sees.
        message["text"] = message["text"][:MAX_TEXT]
    return messages


def form_errors(replies: Sequence[AnyReply]) -> dict[str, str]:
    """The field errors a submission's replies carry (the ack's ``response_action``)."""
    errors: dict[str, str] = {}
    for reply in replies:
        if isinstance(reply, FormErrors):
            errors.update({name: message[:500] for name, message in reply.errors.items()})
    return errors


def modal_view(modal: Modal, *, key: ConversationKey, secret: str) -> dict[str, Any]:
    """The ``views.open`` view of a modal: its form (or the bot's own ``view``), with
    ``callback_id`` = the modal's action and the conversation in ``private_metadata``, so that
    the submission comes back to the bot as a turn on the same conversation."""
    if modal.view is not None:
        view = dict(modal.view)
    else:
        blocks = []
        for field in modal.fields:
            element: dict[str, Any]
            if field.options:
                element = {
                    "type": "static_select",
                    "action_id": "value",
                    "options": [
                        {"text": {"type": "plain_text", "text": o[:75]}, "value": o[:150]}
                        for o in field.options[:100]
                    ],
                }
                if field.initial in field.options:
                    element["initial_option"] = element["options"][
                        field.options.index(field.initial)
                    ]
            else:
                element = {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": field.multiline,
                }
                if field.initial:
                    element["initial_value"] = field.initial
            if field.placeholder:
                element["placeholder"] = {"type": "plain_text", "text": field.placeholder[:150]}
            blocks.append({
                "type": "input",
                "block_id": field.name,
                "optional": field.optional,
                "label": {"type": "plain_text", "text": field.label[:2000]},
                "element": element,
            })  # fmt: skip
        view = {
            "type": "modal",
            "title": {"type": "plain_text", "text": modal.title[:24] or "Form"},
            "submit": {"type": "plain_text", "text": modal.submit[:24] or "Submit"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": blocks,
        }
    view["callback_id"] = modal.action
    view["private_metadata"] = modal_metadata(key, secret)
    return view
