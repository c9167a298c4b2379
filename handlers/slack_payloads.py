"""Pure conversions between Slack payloads and our values: keys, idempotency keys, what to
ignore, and how a platform-neutral reply becomes Block Kit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.messages import Message, Reply
from sessions.keys import ConversationKey

#: Block Kit allows 50 blocks per message; keep room for the header and an overflow note.
MAX_ITEM_BLOCKS = 45
SECTION_LIMIT = 3000


def _enterprise(body: Mapping[str, Any]) -> str | None:
    value = body.get("enterprise_id") or (body.get("enterprise") or {}).get("id")
    return str(value) if value else None


def _id(value: Any) -> str:
    # Anything but a string becomes "", which the key rejects with a clear InvalidKeyError.
    return value if isinstance(value, str) else ""


def command_key(body: Mapping[str, Any]) -> ConversationKey:
    """Key of a slash command (form fields ``team_id``, ``channel_id``, ``user_id``)."""
    return ConversationKey.slack(
        team=_id(body.get("team_id")),
        channel=_id(body.get("channel_id")),
        user=_id(body.get("user_id")),
        enterprise=_enterprise(body),
    )


def event_key(body: Mapping[str, Any]) -> ConversationKey:
    """Key of an Events API message (``team_id`` at the top, channel and user in ``event``)."""
    event = body.get("event") or {}
    return ConversationKey.slack(
        team=_id(body.get("team_id")),
        channel=_id(event.get("channel")),
        user=_id(event.get("user")),
        enterprise=_enterprise(body),
    )


def action_key(body: Mapping[str, Any]) -> ConversationKey:
    """Key of an interactivity payload (``team.id``, ``user.id``, channel or container)."""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    return ConversationKey.slack(
        team=_id((body.get("team") or {}).get("id")),
        channel=_id(channel),
        user=_id((body.get("user") or {}).get("id")),
        enterprise=_enterprise(body),
    )


def action_idempotency_key(body: Mapping[str, Any], action: Mapping[str, Any]) -> str:
    """Interactivity is never redelivered, but one payload must still apply once: its
    ``trigger_id`` is unique per payload; the action's own ids back it up."""
    trigger = body.get("trigger_id")
    if trigger:
        return f"trigger:{trigger}"
    message_ts = (body.get("container") or {}).get("message_ts", "")
    return f"action:{message_ts}:{action.get('action_id', '')}:{action.get('action_ts', '')}"


def ignored_message(body: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
    """Why a ``message`` event must not reach the bot, or ``None`` when it should.

    Bots (``bot_id``, ``bot_message``) and our own bot user would loop; edits, deletes and
    joins (any subtype) are not something the user said to us; only DMs (``im``) are ours.
    """
    if event.get("bot_id") or event.get("subtype") == "bot_message":
        return "message from a bot"
    if event.get("subtype"):
        return f"message subtype {event.get('subtype')}"
    user = event.get("user")
    for auth in body.get("authorizations") or []:
        if auth.get("is_bot") and auth.get("user_id") == user:
            return "message from our own bot user"
    if event.get("channel_type") != "im":
        return "not a direct message"
    if not isinstance(event.get("text"), str) or not event.get("text", "").strip():
        return "no text"
    return None


def message_from_action(action: Mapping[str, Any]) -> Message:
    return Message(action=str(action.get("action_id") or ""), value=str(action.get("value") or ""))


def escape(text: str) -> str:
    """Slack's three control characters: user text must not become a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str, accessory: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT] or " "},
    }
    if accessory:
        block["accessory"] = accessory
    return block


def _button(label: str, action: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label[:75]},
        "action_id": action,
        "value": value[:2000],
    }


def render(replies: Sequence[Reply]) -> dict[str, Any]:
    """Replies as one Slack message: ``text`` (notification fallback) and ``blocks``.

    A button whose ``line`` is part of the reply's text becomes that line's accessory, so
    each listed item carries its own Done button.
    """
    blocks: list[dict[str, Any]] = []
    texts: list[str] = []
    for reply in replies:
        text = escape(reply.text)
        texts.append(text)
        by_line = {escape(b.line): b for b in reply.buttons if b.line}
        loose = [b for b in reply.buttons if not b.line]
        header: list[str] = []
        items = 0
        for line in text.split("\n"):
            button = by_line.get(line)
            if button is not None and items < MAX_ITEM_BLOCKS:
                if header:
                    blocks.append(_section("\n".join(header)))
                    header = []
                blocks.append(_section(line, _button(button.label, button.action, button.value)))
                items += 1
            else:
                header.append(line)
        if header:
            blocks.append(_section("\n".join(header)))
        if loose:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [_button(b.label, b.action, b.value) for b in loose[:25]],
                }
            )
    return {"text": "\n\n".join(texts)[:40000], "blocks": blocks[:50]}
