"""Pure conversions of WhatsApp Cloud API webhooks: the signature, a signed body into typed
messages and statuses.

A webhook body (Meta's documented shape)::

    {"object": "whatsapp_business_account",
     "entry": [{"id": <WABA id>, "changes": [{"field": "messages", "value": {
         "messaging_product": "whatsapp",
         "metadata": {"display_phone_number", "phone_number_id"},
         "contacts": [{"profile": {"name"}, "wa_id"}],
         "messages": [{"from", "id": "wamid.…", "timestamp": "<epoch s>", "type", ...}],
         "statuses": [{"id": <wamid of ours>, "status", "timestamp", "recipient_id",
                       "errors": [{"code", "title"}]}]}}]}]}

A message's user is its ``from`` as sent: a phone number's digits, or a business-scoped user
id (BSUID, e.g. ``US.13491208655302741918``); it is never parsed as a number. The conversation
is ``whatsapp#<phone_number_id>#<from>``, the event ``wamid:<id>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bot.messages import Attachment, Message
from sessions.errors import InvalidKeyError
from sessions.keys import ConversationKey

OBJECT = "whatsapp_business_account"
PLATFORM: Final = "whatsapp"
#: Later than any time Meta sends, in seconds (the year 5138): a message stamped so is refused.
MAX_TIMESTAMP = 10**11
#: Message types that carry a file, and the attachment kind each becomes.
MEDIA = {"image": "image", "audio": "audio", "video": "video", "document": "file",
         "sticker": "sticker"}  # fmt: skip
#: Statuses Meta reports for a message we sent.
STATUSES = ("sent", "delivered", "read", "failed", "deleted", "warning")


class MalformedBatch(ValueError):
    """A signed body that is not a WhatsApp webhook we can read (or, inside
    :func:`parse_batch`, one message of it)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message a user sent, converted at the edge."""

    key: ConversationKey
    idempotency_key: str
    wamid: str
    #: Meta's ``timestamp``: epoch seconds.
    timestamp: int
    message: Message


@dataclass(frozen=True, slots=True)
class Status:
    """What became of a message we sent: no turn; a ``failed`` one is logged by hash and
    counted. ``codes``: the Graph error codes Meta gave (131047: outside the 24-hour window)."""

    status: str
    number: str
    wamid_hash: str
    codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Batch:
    messages: list[Incoming] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)


def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``, compared in
    constant time over the exact bytes Meta sent (never re-serialised)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    given = header.removeprefix("sha256=").strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, given)


def encode_payload(action: str, value: str) -> str:
    """A reply button's or list row's id: the bot's action and value (JSON)."""
    return json.dumps({"action": action, "value": value}, separators=(",", ":"))


#: The key of a suggested prompt's button id (``bot.assistant.Prompts``): the message it sends.
PROMPT_KEY = "prompt"


def prompt_id(message: str) -> str:
    """A suggested prompt's button id: tapping it sends ``message`` as the user's text."""
    return json.dumps({PROMPT_KEY: message}, separators=(",", ":"))


def prompt_of(payload: str) -> str | None:
    """The message of a prompt's button id, else ``None``."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and set(data) == {PROMPT_KEY} and isinstance(data[PROMPT_KEY], str):
        return str(data[PROMPT_KEY])
    return None


def decode_payload(payload: str) -> tuple[str, str]:
    """An id of ours back as ``(action, value)``; any other (a template's quick-reply button
    payload) is its own action with no value."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("action"), str):
        return data["action"], str(data.get("value") or "")
    return payload, ""


def digest(value: Any) -> str:
    """What a log line may say of an id or a refused item: a hash of it (16 hex)."""
    try:
        raw = json.dumps(value, sort_keys=True, default=repr).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError):
        raw = repr(type(value)).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _tapped(payload: str, label: str, handles: Callable[[str], bool]) -> dict[str, Any]:
    prompt = prompt_of(payload)
    if prompt is not None:  # a suggested prompt: its message, as if typed
        return {"text": prompt, "payload": payload}
    action, value = decode_payload(payload)
    if handles(action):
        return {"kind": "action", "action": action, "value": value, "payload": payload}
    return {"text": label, "payload": payload}


def _fields(item: Mapping[str, Any], handles: Callable[[str], bool]) -> dict[str, Any] | None:
    """The :class:`Message` fields of one message, ``None`` for a type no bot reads
    (reactions, contacts cards, orders, system notices, ``unsupported``)."""
    kind = item.get("type")
    if kind == "text":
        body = item.get("text")
        text = _text(body.get("body")) if isinstance(body, Mapping) else ""
        return {"text": text} if text.strip() else None
    if kind == "interactive":
        interactive = item.get("interactive")
        if not isinstance(interactive, Mapping):
            raise MalformedBatch("interactive message without its object")
        sub = interactive.get("type")
        if sub not in ("button_reply", "list_reply"):
            return None  # a flow's answer (nfm_reply), ...: not ours to read
        tapped = interactive.get(sub)
        if not isinstance(tapped, Mapping) or not isinstance(tapped.get("id"), str):
            raise MalformedBatch(f"{sub} without an id")
        return _tapped(tapped["id"], _text(tapped.get("title")), handles)
    if kind == "button":  # a template's quick-reply button
        button = item.get("button")
        if not isinstance(button, Mapping) or not isinstance(button.get("payload"), str):
            raise MalformedBatch("button without a payload")
        return _tapped(button["payload"], _text(button.get("text")), handles)
    if isinstance(kind, str) and kind in MEDIA:
        media = item.get(kind)
        if not isinstance(media, Mapping) or not isinstance(media.get("id"), str):
            raise MalformedBatch(f"{kind} without a media id")
        # The webhook carries the media's id, not a URL: GET /<id> with the number's token
        # answers a download URL that lives for minutes. The id stands in the URL's place.
        file = Attachment(kind=MEDIA[kind], url=media["id"], name=_text(media.get("filename")),
                          mime=_text(media.get("mime_type")))  # fmt: skip
        return {"text": _text(media.get("caption")), "attachments": (file,)}
    if kind == "location":
        place = item.get("location")
        if not isinstance(place, Mapping):
            raise MalformedBatch("location without its object")
        where = {
            name: place[name]
            for name in ("latitude", "longitude")
            if type(place.get(name)) in (int, float)
        }
        if len(where) != 2:
            raise MalformedBatch("location without latitude and longitude")
        where.update({n: _text(place.get(n)) for n in ("name", "address") if place.get(n)})
        text = _text(place.get("name")) or _text(place.get("address"))
        return {"text": text, "payload": where}
    return None


def _timestamp(value: Any) -> int:
    """Meta's ``timestamp``: epoch seconds as a string of digits (an integer read alike)."""
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) < 16:
        seconds = int(value)
    elif type(value) is int:  # bool is an int to Python, not to Meta
        seconds = value
    else:
        raise MalformedBatch("timestamp is not epoch seconds")
    if not 0 < seconds < MAX_TIMESTAMP:
        raise MalformedBatch("timestamp out of range")
    return seconds


def _incoming(
    number: str, item: Mapping[str, Any], handles: Callable[[str], bool]
) -> Incoming | None:
    wamid = item.get("id")
    sender = item.get("from")
    if not isinstance(wamid, str) or not wamid:
        raise MalformedBatch("message without an id")
    if not isinstance(sender, str):
        raise MalformedBatch("message without a sender")
    seconds = _timestamp(item.get("timestamp"))
    fields = _fields(item, handles)
    if fields is None:
        return None
    key = ConversationKey(PLATFORM, number, number, sender)  # InvalidKeyError: not an id
    idempotency_key = f"wamid:{wamid}"
    key.event_sk(idempotency_key)  # an over-long id: InvalidKeyError, bad input
    message = Message(platform=PLATFORM, workspace=number, conversation=number, user=sender,
                      time=float(seconds), raw=item, **fields)  # fmt: skip
    return Incoming(key=key, idempotency_key=idempotency_key, wamid=wamid, timestamp=seconds,
                    message=message)  # fmt: skip


def _status(number: str, item: Mapping[str, Any]) -> Status:
    status = item.get("status")
    wamid = item.get("id")
    if not isinstance(status, str) or not isinstance(wamid, str):
        raise MalformedBatch("status without a status or an id")
    errors = item.get("errors")
    codes = tuple(
        e["code"]
        for e in (errors if isinstance(errors, list) else ())
        if isinstance(e, Mapping) and type(e.get("code")) is int
    )
    known = status if status in STATUSES else "other"
    return Status(status=known, number=number, wamid_hash=digest(wamid), codes=codes)


def parse_batch(
    data: Any,
    handles: Callable[[str], bool] = bool,
    *,
    rejected: list[tuple[str, str]] | None = None,
) -> Batch:
    """Every message (in ``timestamp`` order: per sender it matters) and every status of every
    change of every entry.

    A message, status, change or entry that cannot be read, or whose ids are not Meta's, is
    left out and the rest goes on: each is appended to ``rejected`` as (reason class,
    :func:`digest`). A redelivery would carry it again as it is, so answering anything but 200
    for it would only have Meta redeliver it for 7 days. Changes of other fields (account
    updates, templates' reviews) are not messages: skipped.

    Raises:
        MalformedBatch: not ``object: whatsapp_business_account``, or no list of entries.
    """
    refused = rejected if rejected is not None else []
    if not isinstance(data, Mapping) or data.get("object") != OBJECT:
        raise MalformedBatch(f"not a WhatsApp webhook (object must be {OBJECT!r})")
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise MalformedBatch("entry must be a list")
    batch = Batch()
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, Mapping) else None
        if not isinstance(changes, list):
            refused.append(("MalformedEntry", digest(entry)))
            continue
        for change in changes:
            if isinstance(change, Mapping) and change.get("field") not in (None, "messages"):
                continue
            value = change.get("value") if isinstance(change, Mapping) else None
            metadata = value.get("metadata") if isinstance(value, Mapping) else None
            number = metadata.get("phone_number_id") if isinstance(metadata, Mapping) else None
            messages = value.get("messages", []) if isinstance(value, Mapping) else None
            statuses = value.get("statuses", []) if isinstance(value, Mapping) else None
            if (
                not isinstance(number, str)
                or not (number.isascii() and number.isdecimal() and len(number) <= 32)
                or not isinstance(messages, list)
                or not isinstance(statuses, list)
            ):
                refused.append(("MalformedChange", digest(change)))
                continue
            for item in messages:
                try:
                    if not isinstance(item, Mapping):
                        raise MalformedBatch("messages must be objects")
                    incoming = _incoming(number, item, handles)
                except (MalformedBatch, InvalidKeyError) as exc:
                    refused.append((type(exc).__name__, digest(item)))
                    continue
                if incoming is not None:
                    batch.messages.append(incoming)
            for item in statuses:
                try:
                    if not isinstance(item, Mapping):
                        raise MalformedBatch("statuses must be objects")
                    batch.statuses.append(_status(number, item))
                except MalformedBatch as exc:
                    refused.append((type(exc).__name__, digest(item)))
    batch.messages.sort(key=lambda i: i.timestamp)  # stable: one second keeps batch order
    return batch
