"""Pure parsing for Messenger: the webhook signature, batches into messages, the postback
payloads of our buttons (the outbound side is ``handlers.messenger.render``)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.messages import Attachment, Message
from handlers.messenger import assistant
from sessions.errors import InvalidKeyError
from sessions.keys import ConversationKey


class MalformedBatch(ValueError):
    """A signed body that is not a page webhook batch we can read (or, inside
    :func:`parse_batch`, one message of it)."""


#: A webhook's ``object`` and the platform its messages are: a Page's Messenger conversations,
#: or an Instagram professional account's (same signature, same ``messaging[]`` shape, ids of
#: its own: the account id for the page's, the IGSID for the PSID).
PLATFORM_OF = {"page": "messenger", "instagram": "instagram"}

#: Later than any time Meta sends, in ms (the year 5138): a message stamped so is refused.
MAX_TIMESTAMP = 10**14


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


def decode_payload(payload: str) -> tuple[str, str]:
    """A quick reply's or postback's payload as ``(action, value)``: ours are JSON
    (:func:`encode_payload`); any other payload (a Get Started button, a persistent menu) is
    its own action with no value."""
    try:
        data = json.loads(payload)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("action"), str):
        return data["action"], str(data.get("value") or "")
    return payload, ""


def attachments(message: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """``message.attachments[]`` with a URL (images, video, audio, files), as typed values."""
    found = []
    items = message.get("attachments")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        payload = item.get("payload")
        if not isinstance(payload, Mapping):
            continue
        url = payload.get("url")
        if isinstance(url, str) and url:
            name = str(payload.get("title") or item.get("title") or "")
            found.append(Attachment(kind=str(item.get("type") or "file"), url=url, name=name))
    return tuple(found)


def _incoming(
    page: str, item: Mapping[str, Any], handles: Callable[[str], bool], platform: str = "messenger"
) -> Incoming | None:
    """One ``messaging[]`` element, or None for what we ignore (echoes, delivery, read, ...).

    A quick reply or postback whose action the bot declares (``handles``) is an action; any
    other is delivered as the text the user tapped, with its ``payload`` kept.
    """
    sender_field = item.get("sender")
    sender = sender_field.get("id") if isinstance(sender_field, Mapping) else None
    timestamp = item.get("timestamp")
    message = item.get("message")
    postback = item.get("postback")
    fields: dict[str, Any]
    if isinstance(message, Mapping):
        if message.get("is_echo"):
            return None  # our own sends, echoed back with the page as sender
        mid = message.get("mid")
        text = str(message.get("text")) if isinstance(message.get("text"), str) else ""
        quick = message.get("quick_reply")
        files = attachments(message)
        payload = quick.get("payload") if isinstance(quick, Mapping) else None
        if isinstance(payload, str):
            fields = _tapped(payload, text, handles)
        elif text.strip() or files:
            fields = {"text": text}
        else:
            return None  # stickers, locations, empty messages: nothing a bot can read
        fields["attachments"] = files
    elif isinstance(postback, Mapping):
        mid = postback.get("mid") or f"postback:{sender}:{timestamp}"
        payload = postback.get("payload")
        title = str(postback.get("title") or "")
        fields = _tapped(payload, title, handles) if isinstance(payload, str) else {"text": title}
    else:
        return None  # delivery, read, reaction, referral, ...
    # bool is an int to Python, not to Meta: ``"timestamp": true`` is malformed.
    if not isinstance(mid, str) or not mid or type(timestamp) is not int:
        raise MalformedBatch("message without a mid or an integer timestamp")
    if not 0 < timestamp < MAX_TIMESTAMP:
        raise MalformedBatch("message timestamp out of range")
    if not isinstance(sender, str):
        raise MalformedBatch("message without a sender id")
    key = ConversationKey(platform, page, page, sender)  # validated
    key.event_sk(f"mid:{mid}")  # an over-long mid: InvalidKeyError, bad input
    incoming = Message(platform=platform, workspace=page, conversation=page, user=sender,
                       time=timestamp / 1000, raw=item, **fields)  # fmt: skip
    return Incoming(key=key, idempotency_key=f"mid:{mid}", mid=mid, timestamp=timestamp,
                    message=incoming)  # fmt: skip


def _tapped(payload: str, label: str, handles: Callable[[str], bool]) -> dict[str, Any]:
    prompt = assistant.prompt_of(payload)
    if prompt is not None:  # a suggested prompt: its message, as if typed
        return {"text": prompt, "payload": payload}
    action, value = decode_payload(payload)
    if handles(action):
        return {"kind": "action", "action": action, "value": value, "payload": payload}
    return {"text": label, "payload": payload}


def rejection(item: Any) -> str:
    """What a log line may say of a message refused on its own: a hash of it (it may carry
    ids and text, which no log line does), to find it in Meta's delivery logs."""
    try:
        raw = json.dumps(item, sort_keys=True, default=repr).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError):
        raw = repr(type(item)).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_batch(
    data: Any,
    handles: Callable[[str], bool] = bool,
    *,
    rejected: list[tuple[str, str]] | None = None,
) -> list[Incoming]:
    """Every handled message of every entry, in ``timestamp`` order (per sender it matters).

    A message (or an entry) that cannot be read, or whose ids are not Meta's, is left out
    and the rest of the batch goes on: each is appended to ``rejected`` as (reason class,
    :func:`rejection` hash). A redelivery would carry it again as it is, so answering anything
    but 200 for it would only get the webhook disabled.

    Raises:
        MalformedBatch: not ``object: page`` (or ``instagram``), or not a list of entries:
            nothing to go on with.
    """
    refused = rejected if rejected is not None else []
    kind = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(kind, str) or kind not in PLATFORM_OF:
        raise MalformedBatch("not a page webhook (object must be 'page' or 'instagram')")
    platform = PLATFORM_OF[kind]
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise MalformedBatch("entry must be a list")
    found: list[Incoming] = []
    for entry in entries:
        page = entry.get("id") if isinstance(entry, Mapping) else None
        items = (entry.get("messaging") or []) if isinstance(entry, Mapping) else None
        if not isinstance(items, list) or not isinstance(page, str):
            refused.append(("MalformedEntry", rejection(entry)))
            continue
        for item in items:
            try:
                if not isinstance(item, Mapping):
                    raise MalformedBatch("messaging items must be objects")
                incoming = _incoming(page, item, handles, platform)
            except (MalformedBatch, InvalidKeyError) as exc:
                refused.append((type(exc).__name__, rejection(item)))
                continue
            if incoming is not None:
                found.append(incoming)
    found.sort(key=lambda i: i.timestamp)  # stable: equal timestamps keep batch order
    return found
