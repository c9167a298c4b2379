"""Really signed WhatsApp Cloud API webhook requests, built at test time in the shapes Meta
documents (``object: whatsapp_business_account``, ``entry[].changes[].value``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from tests.slack_requests import http_v2

APP_SECRET = "test-whatsapp-app-secret-0123"
VERIFY_TOKEN = "test-whatsapp-verify-token"
TOKEN = "whatsapp-token-test"
WABA = "102290129340398"
NUMBER = "106540352242922"
DISPLAY = "15550783881"
USER = "16505551234"
#: A business-scoped user id (Meta, from 2026): not digits.
BSUID = "US.13491208655302741918"

_clock = [int(time.time()) - 5]


def now() -> str:
    """Epoch seconds as a string, as Meta sends them."""
    return str(max(_clock[0], int(time.time()) - 5))


def wamid() -> str:
    return "wamid.HBgL" + uuid.uuid4().hex.upper()


def _message(kind: str, body: dict[str, Any], *, user: str, mid: str | None,
             timestamp: str | None) -> dict[str, Any]:  # fmt: skip
    return {"from": user, "id": mid or wamid(), "timestamp": timestamp or now(), "type": kind,
            kind: body}  # fmt: skip


def text(body: str, *, user: str = USER, mid: str | None = None,
         timestamp: str | None = None) -> dict[str, Any]:  # fmt: skip
    return _message("text", {"body": body}, user=user, mid=mid, timestamp=timestamp)


def button_reply(reply_id: str, title: str, *, user: str = USER) -> dict[str, Any]:
    interactive = {"type": "button_reply", "button_reply": {"id": reply_id, "title": title}}
    message = _message("interactive", interactive, user=user, mid=None, timestamp=None)
    message["context"] = {"from": DISPLAY, "id": wamid()}
    return message


def list_reply(row_id: str, title: str, *, user: str = USER) -> dict[str, Any]:
    interactive = {"type": "list_reply",
                   "list_reply": {"id": row_id, "title": title, "description": ""}}  # fmt: skip
    return _message("interactive", interactive, user=user, mid=None, timestamp=None)


def image(caption: str = "", *, user: str = USER) -> dict[str, Any]:
    media = {"id": "1479537139650973", "mime_type": "image/jpeg",
             "sha256": "HgJ7K9PZ8N8QrVxjC3x9rW3sJ8Y6Q4nX7yPb2m1Kc0Q="}  # fmt: skip
    if caption:
        media["caption"] = caption
    return _message("image", media, user=user, mid=None, timestamp=None)


def location(*, user: str = USER) -> dict[str, Any]:
    place = {"latitude": 37.4847, "longitude": -122.1473, "name": "Meta HQ",
             "address": "1 Hacker Way, Menlo Park, CA"}  # fmt: skip
    return _message("location", place, user=user, mid=None, timestamp=None)


def status(of: str, state: str = "delivered", *, user: str = USER,
           code: int | None = None) -> dict[str, Any]:  # fmt: skip
    item: dict[str, Any] = {"id": of, "status": state, "timestamp": now(), "recipient_id": user}
    if state == "sent":
        item["conversation"] = {"id": uuid.uuid4().hex, "origin": {"type": "service"}}
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if code is not None:
        item["errors"] = [{"code": code, "title": "Message failed to send",
                           "error_data": {"details": "Message failed to send"}}]  # fmt: skip
    return item


def value(*messages: dict[str, Any], statuses: tuple[dict[str, Any], ...] = (),
          number: str = NUMBER) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": number},
    }
    if messages:
        users = sorted({m["from"] for m in messages})
        out["contacts"] = [{"profile": {"name": "Kerry Fisher"}, "wa_id": u} for u in users]
        out["messages"] = list(messages)
    if statuses:
        out["statuses"] = list(statuses)
    return out


def webhook(*values: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"value": v, "field": "messages"} for v in values]}],
    }


def single(*messages: dict[str, Any], number: str = NUMBER) -> dict[str, Any]:
    return webhook(value(*messages, number=number))


def signed(raw: bytes, *, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}


def raw_of(data: dict[str, Any]) -> bytes:
    # Meta escapes non-ASCII and slashes; the signature is over these exact bytes.
    return json.dumps(data).replace("/", "\\/").encode()


def post(data: dict[str, Any] | bytes, *, secret: str = APP_SECRET,
         headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    raw = data if isinstance(data, bytes) else raw_of(data)
    hdrs = signed(raw, secret=secret) if headers is None else headers
    return http_v2(raw, hdrs, path="/whatsapp/webhook", base64_body=False)


def verify(params: dict[str, str]) -> dict[str, Any]:
    event = http_v2(b"", {}, path="/whatsapp/webhook", method="GET", base64_body=False)
    event["rawQueryString"] = urlencode(params)
    event["queryStringParameters"] = params
    event.pop("body")
    return event
