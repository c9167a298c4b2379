"""Pure parsing of Slack's inbound payloads into our values: keys, idempotency keys, event
times, what to ignore, the bot's messages, a modal's signed conversation (the outbound side,
Block Kit, is ``handlers.slack.render``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from bot.messages import Attachment, Message
from sessions.errors import InvalidKeyError
from sessions.keys import ConversationKey


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


def _team(body: Mapping[str, Any], value: Any) -> str:
    """The workspace of a payload: its team id; for an Enterprise Grid org-wide install's
    payload that names no team, the org (its enterprise id stands in for the workspace)."""
    if value is None or value == "":
        return _enterprise(body) or ""
    return _id(value)


def installation_of_event(body: Mapping[str, Any]) -> tuple[str | None, str | None, bool]:
    """Whose installation an Events API payload is for, as Bolt reads it: the enterprise,
    the team and whether it is an org-wide install, from ``authorizations[0]`` when there
    is one (shared channels), else from the body (``is_enterprise_install``; a payload that
    names an enterprise and no team is the org's). Ids that are not strings count as absent."""
    auths = body.get("authorizations")
    source: Mapping[str, Any] = body
    if isinstance(auths, list) and auths and isinstance(auths[0], Mapping):
        source = auths[0]

    def text(name: str) -> str | None:
        value = source.get(name)
        if not isinstance(value, str) or not value:
            value = body.get(name)
        return value if isinstance(value, str) and value else None

    enterprise, team = text("enterprise_id"), text("team_id")
    flag = source.get("is_enterprise_install")
    org = enterprise is not None and (flag is True or flag == "true" or team is None)
    return enterprise, team, org


_TIME = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?", flags=re.ASCII)
#: Later than any time a platform sends (the year 5138): refused as no time.
MAX_SECONDS = 1e11


def _seconds(value: Any) -> float | None:
    """A Slack time (``event_time`` 1531420618, ``action_ts`` "1548426417.840180") in epoch
    seconds, or ``None`` when absent or not a time (a boolean is not a number here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _TIME.fullmatch(value):  # ASCII digits only: "²" is not
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            return None
        return seconds if math.isfinite(seconds) and 0 <= seconds < MAX_SECONDS else None
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
    """When the event happened, at the finest resolution Slack gives, as the user delete's
    tombstone compares it and the store files the event's record by it.

    - Events API: the event's ``event_ts`` (microseconds, "1355517523.000005") when it lies
      in the second of the envelope's ``event_time`` (whole seconds), which it refines; else
      ``event_time``. Both are Slack's clock truncated (never later than the event), so the
      finer one stays on the safe side of a delete, and a redelivery carries both again.
    - Block actions: the action's ``action_ts`` (microseconds).
    - Slash commands, view submissions and anything else: the request's signed timestamp,
      whole seconds. A slash command carries no time of its own (its ``trigger_id`` is opaque,
      and our clock's arrival time would be later than the command, on the unsafe side of a
      delete), so several in one second share a time; the store keeps their lookups to one
      read (``sessions.dynamodb_layout``).
    """
    when = _seconds(body.get("event_time"))
    event = body.get("event")
    fine = _seconds(event.get("event_ts")) if isinstance(event, Mapping) else None
    if when is not None and fine is not None and math.floor(fine) == math.floor(when):
        when = fine
    if when is None:
        actions = body.get("actions")
        if isinstance(actions, list) and actions and isinstance(actions[0], Mapping):
            when = _seconds(actions[0].get("action_ts"))
    return when if when is not None else request_time(headers)


def command_key(body: Mapping[str, Any]) -> ConversationKey:
    """Key of a slash command (form fields ``team_id``, ``channel_id``, ``user_id``)."""
    return ConversationKey.slack(
        team=_team(body, body.get("team_id")),
        channel=_id(body.get("channel_id")),
        user=_id(body.get("user_id")),
        enterprise=_enterprise(body),
    )


def event_key(body: Mapping[str, Any]) -> ConversationKey:
    """Key of an Events API message (``team_id`` at the top, channel and user in ``event``)."""
    return ConversationKey.slack(
        team=_team(body, body.get("team_id")),
        channel=_id(_field(body, "event", "channel")),
        user=_id(_field(body, "event", "user")),
        enterprise=_enterprise(body),
    )


def action_key(body: Mapping[str, Any], *, secret: str | None = None) -> ConversationKey:
    """Key of an interactivity payload (``team.id``, ``user.id``, channel or container; for a
    button inside one of our modals, the modal's signed channel: ``secret`` verifies it)."""
    team, user = _team(body, _field(body, "team", "id")), _id(_field(body, "user", "id"))
    channel = (
        _field(body, "channel", "id")
        or _field(body, "container", "channel_id")
        or view_channel(body.get("view"), team=team, user=user, secret=secret)
    )
    return ConversationKey.slack(
        team=team,
        channel=_id(channel),
        user=user,
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
    if event.get("subtype") and not (event.get("subtype") == "file_share" and attachments(event)):
        return f"message subtype {event.get('subtype')}"
    user = event.get("user")
    authorizations = body.get("authorizations")
    for auth in authorizations if isinstance(authorizations, list) else []:
        if isinstance(auth, Mapping) and auth.get("is_bot") and auth.get("user_id") == user:
            return "message from our own bot user"
    if event.get("channel_type") != "im":
        return "not a direct message"
    text = event.get("text")
    if not (isinstance(text, str) and text.strip()) and not attachments(event):
        return "no text"
    if text is not None and not isinstance(text, str):
        return "no text"
    return None


# -- incoming: payloads into bot messages ------------------------------------------------------

#: Fields of a Slack payload that are secrets (the legacy verification token): never passed to
#: the bot, nor kept in a deferred job or a dead letter.
SECRET_FIELDS = frozenset({"token"})


def raw(body: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as the bot may see it (``Message.raw``): secrets removed."""
    return {k: v for k, v in body.items() if k not in SECRET_FIELDS}


def _message(
    key: ConversationKey, when: float | None, body: Mapping[str, Any], **fields: Any
) -> Message:
    return Message(platform="slack", workspace=key.workspace, conversation=key.channel,
                   user=key.user, time=when, raw=raw(body), **fields)  # fmt: skip


def command_message(body: Mapping[str, Any], key: ConversationKey, when: float | None) -> Message:
    return _message(key, when, body, kind="command", command=_id(body.get("command")),
                    text=str(body.get("text") or ""))  # fmt: skip


def attachments(event: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """Slack files shared with a message, as typed values (``url_private``: fetch it with the
    bot token)."""
    found = []
    files = event.get("files")
    for item in files if isinstance(files, list) else []:
        if not isinstance(item, Mapping) or not isinstance(item.get("url_private"), str):
            continue
        mime = str(item.get("mimetype") or "")
        kind = (
            mime.split("/", 1)[0]
            if mime.split("/", 1)[0] in ("image", "video", "audio")
            else "file"
        )
        found.append(
            Attachment(
                kind=kind, url=item["url_private"], name=str(item.get("name") or ""), mime=mime
            )
        )
    return tuple(found)


def event_message(body: Mapping[str, Any], key: ConversationKey, when: float | None) -> Message:
    event = _field(body, "event") or {}
    return _message(key, when, body, text=str(event.get("text") or ""),
                    attachments=attachments(event))  # fmt: skip


def action_value(action: Mapping[str, Any]) -> str:
    """A button's ``value``, or what a select or a picker chose."""
    if "value" in action:
        return str(action.get("value") or "")
    option = action.get("selected_option")
    if isinstance(option, Mapping):
        return str(option.get("value") or "")
    for name in ("selected_date", "selected_time", "selected_user", "selected_channel",
                 "selected_conversation"):  # fmt: skip
        if isinstance(action.get(name), str):
            return str(action[name])
    return ""


def action_message(
    body: Mapping[str, Any], action: Mapping[str, Any], key: ConversationKey, when: float | None
) -> Message:
    return _message(key, when, body, kind="action", action=_id(action.get("action_id")),
                    value=action_value(action))  # fmt: skip


def _modal_signature(secret: str, team: str, user: str, channel: str) -> str:
    message = f"modal|{team}|{user}|{channel}".encode("utf-8", "surrogatepass")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def modal_metadata(key: ConversationKey, secret: str) -> str:
    """What a modal we open carries in ``private_metadata``: its conversation's channel and an
    HMAC (the signing secret) binding it to the team and user who opened it."""
    signature = _modal_signature(secret, key.workspace, key.user, key.channel)
    return json.dumps({"channel": key.channel, "sig": signature})


def view_channel(view: Any, *, team: str, user: str, secret: str | None) -> str:
    """The conversation a modal belongs to, from its ``private_metadata``, only if its HMAC
    verifies for this team and user: metadata is the client's to send, and an unverified
    channel would let a submission answer into another conversation. ``""`` otherwise, which
    the key refuses."""
    if not isinstance(view, Mapping) or not secret:
        return ""
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except (ValueError, TypeError, RecursionError):
        return ""
    if not isinstance(data, Mapping):
        return ""
    channel, signature = _id(data.get("channel")), data.get("sig")
    expected = _modal_signature(secret, team, user, channel)
    if not isinstance(signature, str) or not hmac.compare_digest(
        signature.encode("utf-8", "surrogatepass"), expected.encode()
    ):
        return ""
    return channel


def view_key(body: Mapping[str, Any], *, secret: str | None) -> ConversationKey:
    """Key of a ``view_submission``: its team and user, and the channel the modal came from
    (signed when we opened it)."""
    team, user = _team(body, _field(body, "team", "id")), _id(_field(body, "user", "id"))
    return ConversationKey.slack(
        team=team,
        channel=view_channel(body.get("view"), team=team, user=user, secret=secret),
        user=user,
        enterprise=_enterprise(body),
    )


def view_idempotency_key(body: Mapping[str, Any]) -> str:
    """A submission's ``trigger_id`` (unique per payload), else the view's id and hash."""
    trigger = body.get("trigger_id")
    if isinstance(trigger, str) and trigger:
        return f"trigger:{trigger}"
    view = _mapping(body.get("view"))
    return f"view:{view.get('id', '')}:{view.get('hash', '')}"


def form_values(view: Mapping[str, Any]) -> dict[str, str]:
    """A submitted view's inputs: ``{block_id: value}`` (``block_id.action_id`` for a block
    with several inputs). Our modals use the field's name as the block id."""
    values = _field(view, "state", "values")
    form: dict[str, str] = {}
    for block_id, inputs in values.items() if isinstance(values, Mapping) else ():
        if not isinstance(inputs, Mapping):
            continue
        for action_id, value in inputs.items():
            name = block_id if len(inputs) == 1 else f"{block_id}.{action_id}"
            form[str(name)] = action_value(value) if isinstance(value, Mapping) else ""
    return form


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def view_message(body: Mapping[str, Any], key: ConversationKey, when: float | None) -> Message:
    view = _mapping(body.get("view"))
    return _message(key, when, body, kind="submission", action=_id(view.get("callback_id")),
                    form=form_values(view))  # fmt: skip
