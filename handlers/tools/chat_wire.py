"""What the platforms send, built and signed as they build and sign it: the requests ``make
chat`` (:mod:`handlers.tools.chat_client`) and the inspector send to the local server's edge.

Slack's Events API callbacks (a DM, an assistant thread opened), its interactivity payloads
(a button, a modal submitted), its slash commands, Meta's Messenger and WhatsApp webhooks;
Slack's ``v0`` signature and Meta's ``sha256`` one over the raw body. No I/O: the client
posts what these return.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def slack_headers(body: bytes, content_type: str, *, secret: str) -> dict[str, str]:
    """Slack's headers for ``body``, signed with the app's signing secret (``v0``)."""
    ts = str(int(time.time()))
    base = b"v0:" + ts.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "content-type": content_type,
        "x-slack-request-timestamp": ts,
        "x-slack-signature": signature,
    }


def meta_headers(body: bytes, *, secret: str) -> dict[str, str]:
    """Meta's headers for a webhook's ``body``, signed with the app secret (Messenger's and
    WhatsApp's alike)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256)
    return {"content-type": JSON, "x-hub-signature-256": "sha256=" + digest.hexdigest()}


def trigger_id(user: str) -> str:
    return f"{int(time.time())}.{user}.{uuid.uuid4().hex[:12]}"


def slack_dm(
    *, team: str, channel: str, user: str, text: str, thread: str | None
) -> dict[str, Any]:
    """An Events API callback of one DM (``message.im``), in ``thread`` if one is given."""
    now = time.time()
    return {
        "type": "event_callback",
        "team_id": team,
        "api_app_id": "A0LOCAL",
        "event_id": "Ev" + uuid.uuid4().hex[:12].upper(),
        "event_time": int(now),
        "event": {
            "type": "message",
            "channel_type": "im",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": f"{now:.6f}",
            "client_msg_id": str(uuid.uuid4()),
            **({"thread_ts": thread} if thread else {}),
        },
        "authorizations": [{"team_id": team, "user_id": "U0BOT", "is_bot": True}],
    }


def assistant_started(
    *, team: str, channel: str, user: str, thread: str, viewing: str | None, now: float
) -> dict[str, Any]:
    """The ``assistant_thread_started`` callback of the assistant thread ``thread`` (the user
    looking at the channel ``viewing``, if any)."""
    context = {"team_id": team, "enterprise_id": None}
    if viewing:
        context["channel_id"] = viewing
    return {
        "type": "event_callback",
        "team_id": team,
        "api_app_id": "A0LOCAL",
        "event_id": "Ev" + uuid.uuid4().hex[:12].upper(),
        "event_time": int(now),
        "event": {
            "type": "assistant_thread_started",
            "assistant_thread": {"user_id": user, "context": context,
                                 "channel_id": channel, "thread_ts": thread},
            "event_ts": f"{now:.6f}",
        },
        "authorizations": [{"team_id": team, "user_id": "U0BOT", "is_bot": True}],
    }  # fmt: skip


def interaction(kind: str, *, team: str, user: str, **fields: Any) -> dict[str, Any]:
    """An interactivity payload (``block_actions``, ``view_submission``) with ``fields``."""
    return {
        "type": kind,
        "team": {"id": team, "domain": "local"},
        "user": {"id": user, "team_id": team},
        "api_app_id": "A0LOCAL",
        "trigger_id": trigger_id(user),
        **fields,
    }


def slash_command(
    command: str, text: str, *, team: str, channel: str, user: str, response_url: str
) -> dict[str, str]:
    """A slash command's form fields, as Slack posts them."""
    return {
        "command": command,
        "text": text,
        "team_id": team,
        "channel_id": channel,
        "user_id": user,
        "user_name": "you",
        "trigger_id": trigger_id(user),
        "response_url": response_url,
    }


def submitted_view(view: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The modal ``view`` as a ``view_submission`` carries it, with ``values`` by field
    (block id) in its state."""
    state: dict[str, Any] = {}
    for block in view.get("blocks") or []:
        element = block.get("element") or {}
        if block.get("type") != "input" or block.get("block_id") not in values:
            continue
        value = values[block["block_id"]]
        entry: dict[str, Any] = {"type": element.get("type")}
        if element.get("type") == "static_select":
            entry["selected_option"] = {"text": {"type": "plain_text", "text": value},
                                        "value": value}  # fmt: skip
        else:
            entry["value"] = value
        state[block["block_id"]] = {element.get("action_id", "value"): entry}
    return {**view, "id": "V0LOCAL", "hash": uuid.uuid4().hex[:12],
            "state": {"values": state}}  # fmt: skip


def messenger_event(
    *,
    page: str,
    psid: str,
    message: dict[str, Any] | None,
    postback: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Messenger webhook with one messaging item (a message, or a postback)."""
    now = int(time.time() * 1000)
    item: dict[str, Any] = {
        "sender": {"id": psid},
        "recipient": {"id": page},
        "timestamp": now,
    }
    if message is not None:
        item["message"] = {"mid": f"m_{uuid.uuid4().hex}", **message}
    if postback is not None:
        item["postback"] = postback
    return {"object": "page", "entry": [{"id": page, "time": now, "messaging": [item]}]}


def whatsapp_event(*, number: str, user: str, kind: str, content: dict[str, Any]) -> dict[str, Any]:
    """A Cloud API webhook with one message, as Meta sends it (``number``: the business
    number's phone number id; ``user``: the sender's phone number)."""
    message = {"from": user, "id": f"wamid.{uuid.uuid4().hex.upper()}",
               "timestamp": str(int(time.time())), "type": kind, kind: content}  # fmt: skip
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": number},
        "contacts": [{"profile": {"name": "You"}, "wa_id": user}],
        "messages": [message],
    }
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "100000000000001",
                       "changes": [{"field": "messages", "value": value}]}]}  # fmt: skip
