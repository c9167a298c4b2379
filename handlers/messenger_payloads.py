"""Pure conversions for Messenger: the webhook signature, batches into messages, replies into
Send API message objects."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.messages import Message, Reply
from sessions.keys import ConversationKey

TEXT_LIMIT = 2000  # Send API: text must be under 2,000 characters
MAX_QUICK_REPLIES = 13
QUICK_REPLY_TITLE = 20


class MalformedBatch(ValueError):
    """A signed body that is not a page webhook batch we can read."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message or postback from a batch, converted at the edge."""

    key: ConversationKey
    idempotency_key: str
    mid: str
    timestamp: int
    message: Message


def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``, compared in
    constant time over the exact bytes Meta sent (never re-serialised)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    given = header.removeprefix("sha256=").strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, given)  # bytes: any header text compares, never raises


def encode_payload(action: str, value: str) -> str:
    return json.dumps({"action": action, "value": value}, separators=(",", ":"))


def _message_from_payload(payload: Any, fallback_text: str) -> Message:
    if isinstance(payload, str):
        try:
            data = json.loads(payload)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("action"), str):
            return Message(action=data["action"], value=str(data.get("value") or ""))
        return Message(text=payload)
    return Message(text=fallback_text)


def _incoming(page: str, item: Mapping[str, Any]) -> Incoming | None:
    """One ``messaging[]`` element, or None for what we ignore (echoes, delivery, read, ...)."""
    sender_field = item.get("sender")
    sender = sender_field.get("id") if isinstance(sender_field, Mapping) else None
    timestamp = item.get("timestamp")
    message = item.get("message")
    postback = item.get("postback")
    if isinstance(message, Mapping):
        if message.get("is_echo"):
            return None  # our own sends, echoed back with the page as sender
        mid = message.get("mid")
        quick = message.get("quick_reply")
        if isinstance(quick, Mapping):
            incoming = _message_from_payload(quick.get("payload"), str(message.get("text") or ""))
        elif isinstance(message.get("text"), str) and message["text"].strip():
            incoming = Message(text=message["text"])
        else:
            return None  # stickers, attachments without text: nothing for the todo bot
    elif isinstance(postback, Mapping):
        mid = postback.get("mid") or f"postback:{sender}:{timestamp}"
        incoming = _message_from_payload(postback.get("payload"), str(postback.get("title") or ""))
    else:
        return None  # delivery, read, reaction, referral, ...
    # bool is an int to Python, not to Meta: ``"timestamp": true`` is malformed.
    if not isinstance(mid, str) or not mid or type(timestamp) is not int:
        raise MalformedBatch("message without a mid or an integer timestamp")
    if not isinstance(sender, str):
        raise MalformedBatch("message without a sender id")
    key = ConversationKey.messenger(page=page, psid=sender)  # validates both ids
    key.event_sk(f"mid:{mid}")  # an over-long mid: InvalidKeyError, bad input
    return Incoming(key=key, idempotency_key=f"mid:{mid}", mid=mid, timestamp=timestamp,
                    message=incoming)  # fmt: skip


def parse_batch(data: Any) -> list[Incoming]:
    """Every handled message of every entry, in ``timestamp`` order (per sender it matters).

    Raises:
        MalformedBatch: not ``object: page``, or a structure we cannot read.
        InvalidKeyError: a page or sender id outside Meta's digits.
    """
    if not isinstance(data, Mapping) or data.get("object") != "page":
        raise MalformedBatch("not a page webhook (object must be 'page')")
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise MalformedBatch("entry must be a list")
    found: list[Incoming] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise MalformedBatch("entry items must be objects")
        page = entry.get("id")
        items = entry.get("messaging") or []
        if not isinstance(items, list) or not isinstance(page, str):
            raise MalformedBatch("entry needs a page id and a messaging list")
        for item in items:
            if not isinstance(item, Mapping):
                raise MalformedBatch("messaging items must be objects")
            incoming = _incoming(page, item)
            if incoming is not None:
                found.append(incoming)
    found.sort(key=lambda i: i.timestamp)  # stable: equal timestamps keep batch order
    return found


def _chunks(text: str) -> list[str]:
    """Split at line breaks (or hard, for a very long line) into pieces under the limit."""
    limit = TEXT_LIMIT - 1
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            pieces.append(current)
            current = line
        else:
            current = candidate
    if current or not pieces:
        pieces.append(current or " ")
    return pieces


def _title(label: str, line: str | None) -> str:
    if line:
        number = line.split(".", 1)[0]
        label = f"{label} {number}" if number.isdecimal() else label
    return label[:QUICK_REPLY_TITLE]


def render(replies: Sequence[Reply]) -> list[dict[str, Any]]:
    """Send API ``message`` objects: text in pieces under 2,000 characters, the buttons as at
    most 13 quick replies on the last piece."""
    messages: list[dict[str, Any]] = []
    for reply in replies:
        pieces = _chunks(reply.text)
        out: list[dict[str, Any]] = [{"text": piece} for piece in pieces]
        if reply.buttons:
            out[-1]["quick_replies"] = [
                {
                    "content_type": "text",
                    "title": _title(b.label, b.line),
                    "payload": encode_payload(b.action, b.value),
                }
                for b in reply.buttons[:MAX_QUICK_REPLIES]
            ]
        messages.extend(out)
    return messages
