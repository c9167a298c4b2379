"""Really signed Messenger webhook requests, built at test time."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from tests.slack_requests import http_v2

APP_SECRET = "test-app-secret-0123456789"
VERIFY_TOKEN = "test-verify-token"
PAGE = "100200300"
USER = "5550001"

_clock = [int(time.time() * 1000)]


def _now_ms() -> int:
    _clock[0] += 1
    return _clock[0]


def text(
    body: str,
    *,
    psid: str = USER,
    page: str = PAGE,
    mid: str | None = None,
    timestamp: int | None = None,
    quick_reply: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"mid": mid or f"m_{uuid.uuid4().hex}", "text": body}
    if quick_reply is not None:
        message["quick_reply"] = {"payload": quick_reply}
    return {
        "sender": {"id": psid},
        "recipient": {"id": page},
        "timestamp": timestamp if timestamp is not None else _now_ms(),
        "message": message,
    }


def postback(
    payload: str, *, psid: str = USER, page: str = PAGE, title: str = "Go"
) -> dict[str, Any]:
    return {
        "sender": {"id": psid},
        "recipient": {"id": page},
        "timestamp": _now_ms(),
        "postback": {"mid": f"m_{uuid.uuid4().hex}", "title": title, "payload": payload},
    }


def batch(*entries: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "object": "page",
        "entry": [
            {"id": page, "time": _now_ms(), "messaging": messaging} for page, messaging in entries
        ],
    }


def single(*messaging: dict[str, Any], page: str = PAGE) -> dict[str, Any]:
    return batch((page, list(messaging)))


def signed(raw: bytes, *, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}


def post(
    data: dict[str, Any] | bytes,
    *,
    secret: str = APP_SECRET,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    # Meta escapes non-ASCII and slashes; the signature is over these exact bytes.
    raw = data if isinstance(data, bytes) else json.dumps(data).replace("/", "\\/").encode()
    hdrs = signed(raw, secret=secret) if headers is None else headers
    return http_v2(raw, hdrs, path="/messenger/webhook", base64_body=False)


def verify(params: dict[str, str]) -> dict[str, Any]:
    event = http_v2(b"", {}, path="/messenger/webhook", method="GET", base64_body=False)
    event["rawQueryString"] = urlencode(params)
    event["queryStringParameters"] = params
    event.pop("body")
    return event
