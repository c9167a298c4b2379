"""Pure conversions between Slack payloads and our values: keys, idempotency keys, what to
ignore, and how a platform-neutral reply becomes Block Kit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.messages import Message, Reply
from sessions.errors import InvalidKeyError
from sessions.keys import ConversationKey

#: Block Kit allows 50 blocks per message; keep room for the header and an overflow note.
MAX_ITEM_BLOCKS = 45
SECTION_LIMIT = 3000


def _field(body: Any, *path: str) -> Any:
    """``body[path[0]][path[1]]...``; ``None`` where a step is absent or null.

    Raises:
        InvalidKeyError: a step that Slack sends as an object is something else (a signed
            payload may still carry a string or a list there): bad input, a 4xx.
    """
    for depth, name in enumerate(path):
        if body is None:
            return None
        if not isinstance(body, Mapping):
            raise InvalidKeyError(f"{'.'.join(path[:depth])} must be an object")
        body = body.get(name)
    return body


def _enterprise(body: Mapping[str, Any]) -> str | None:
    value = _field(body, "enterprise_id") or _field(body, "enterprise", "id")
    if value is None or value == "":
        return None
    # Anything but a string is invalid: "" makes the key raise a clear InvalidKeyError.
    return value if isinstance(value, str) else ""


def _id(value: Any) -> str:
    # Anything but a string becomes "", which the key rejects with a clear InvalidKeyError.
    return value if isinstance(value, str) else ""


def _seconds(value: Any) -> float | None:
    """A Slack time (``event_time`` 1531420618, ``action_ts`` "1548426417.840180") in epoch
    seconds, or ``None`` when absent or not a time (a boolean is not a number here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.replace(".", "", 1).isdigit():
        return float(value)
    return None


def request_time(headers: Mapping[str, Any]) -> float | None:
    """``X-Slack-Request-Timestamp`` (verified within 300 s before this is read): when Slack
    sent a slash command or an interaction, which carry no event time of their own. Accepts
    Bolt's header lists and plain strings."""
    value = headers.get("x-slack-request-timestamp")
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return _seconds(value)


def event_time(body: Mapping[str, Any], headers: Mapping[str, Any]) -> float | None:
    """When the event happened, as the user delete's tombstone compares it: ``event_time``
    for the Events API, the action's ``action_ts`` for block actions, and the request's
    signed timestamp for slash commands and anything else."""
    when = _seconds(body.get("event_time"))
    if when is None:
        actions = body.get("actions")
        if isinstance(actions, list) and actions and isinstance(actions[0], Mapping):
            when = _seconds(actions[0].get("action_ts"))
    return when if when is not None else request_time(headers)


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
    return ConversationKey.slack(
        team=_id(body.get("team_id")),
        channel=_id(_field(body, "event", "channel")),
        user=_id(_field(body, "event", "user")),
        enterprise=_enterprise(body),
    )


def action_key(body: Mapping[str, Any]) -> ConversationKey:
    """Key of an interactivity payload (``team.id``, ``user.id``, channel or container)."""
    channel = _field(body, "channel", "id") or _field(body, "container", "channel_id")
    return ConversationKey.slack(
        team=_id(_field(body, "team", "id")),
        channel=_id(channel),
        user=_id(_field(body, "user", "id")),
        enterprise=_enterprise(body),
    )


def action_idempotency_key(body: Mapping[str, Any], action: Mapping[str, Any]) -> str:
    """Interactivity is never redelivered, but one payload must still apply once: its
    ``trigger_id`` is unique per payload; the action's own ids back it up."""
    trigger = body.get("trigger_id")
    if trigger:
        return f"trigger:{trigger}"
    try:
        message_ts = _field(body, "container", "message_ts") or ""
    except InvalidKeyError:
        message_ts = ""
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
    authorizations = body.get("authorizations")
    for auth in authorizations if isinstance(authorizations, list) else []:
        if isinstance(auth, Mapping) and auth.get("is_bot") and auth.get("user_id") == user:
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
