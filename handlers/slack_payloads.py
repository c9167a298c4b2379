"""Pure conversions between Slack payloads and our values: keys, idempotency keys, what to
ignore, and how a platform-neutral reply becomes Block Kit."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot.assistant import ASSISTANT_KINDS
from bot.messages import Attachment, Message
from bot.replies import AnyReply, Button, Cards, FormErrors, Media, Modal, Reply
from handlers.text import pieces
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
            continue  # set through the assistant's methods (handlers.slack_threads)
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
