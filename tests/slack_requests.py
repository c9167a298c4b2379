"""Really signed Slack requests, wrapped in API Gateway / Function URL events, at test time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

SECRET = "test-signing-secret-0123456789abcdef"
BOT_USER = "UBOT0001"


def sign(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}


def http_v2(
    body: bytes,
    headers: dict[str, str],
    *,
    path: str = "/slack/events",
    method: str = "POST",
    base64_body: bool = True,
) -> dict[str, Any]:
    """An API Gateway HTTP API (2.0) event; form bodies arrive base64-encoded."""
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"},
        "body": base64.b64encode(body).decode() if base64_body else body.decode(),
        "isBase64Encoded": base64_body,
    }


def rest_v1(body: bytes, headers: dict[str, str], *, path: str = "/slack/events") -> dict[str, Any]:
    """An API Gateway REST (1.0) proxy event: client-cased headers, text body."""
    cased = {"-".join(p.capitalize() for p in k.split("-")): v for k, v in headers.items()}
    return {
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": cased,
        "multiValueHeaders": {k: [v] for k, v in cased.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "requestContext": {"httpMethod": "POST", "path": f"/prod{path}"},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def function_url(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    event = http_v2(body, headers, path="/")
    event["requestContext"]["domainName"] = "abc.lambda-url.us-east-1.on.aws"
    return event


def form(fields: dict[str, str], **kw: Any) -> tuple[bytes, dict[str, str]]:
    body = urlencode(fields).encode()
    headers = {"content-type": "application/x-www-form-urlencoded", **sign(body, **kw)}
    return body, headers


def slash(
    text: str,
    *,
    team: str = "T0001",
    channel: str = "C0001",
    user: str = "U0001",
    response_url: str = "http://127.0.0.1:9/response",
    trigger_id: str | None = None,
    command: str = "/todo",
) -> dict[str, Any]:
    body, headers = form(
        {
            "token": "legacy-unused",
            "team_id": team,
            "team_domain": "example",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": "ada",
            "command": command,
            "text": text,
            "api_app_id": "A0001",
            "response_url": response_url,
            "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:10]}",
        }
    )
    return http_v2(body, headers)


def dm_body(
    text: str,
    *,
    team: str = "T0001",
    channel: str = "D0001",
    user: str = "U0001",
    event_id: str | None = None,
    **event_fields: Any,
) -> dict[str, Any]:
    now = int(time.time())
    event = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": f"{now}.000100",
        "channel_type": "im",
        "event_ts": f"{now}.000100",
        "client_msg_id": str(uuid.uuid4()),
        **event_fields,
    }
    return {
        "token": "legacy-unused",
        "team_id": team,
        "api_app_id": "A0001",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": now,
        "authorizations": [
            {"team_id": team, "user_id": BOT_USER, "is_bot": True, "is_enterprise_install": False}
        ],
    }


def json_event(body: dict[str, Any], *, retry: int | None = None, reason: str = "http_timeout",
               **sign_kw: Any) -> dict[str, Any]:  # fmt: skip
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json", **sign(raw, **sign_kw)}
    if retry is not None:
        headers["x-slack-retry-num"] = str(retry)
        headers["x-slack-retry-reason"] = reason
    return http_v2(raw, headers, base64_body=False)


def block_action(
    value: str,
    *,
    team: str = "T0001",
    channel: str = "C0001",
    user: str = "U0001",
    response_url: str = "http://127.0.0.1:9/response",
    action_id: str = "todo_done",
    action_ts: str | None = None,
) -> dict[str, Any]:
    payload = {
        "type": "block_actions",
        "team": {"id": team, "domain": "example"},
        "user": {"id": user, "username": "ada", "team_id": team},
        "api_app_id": "A0001",
        "container": {"type": "message", "message_ts": "1.1", "channel_id": channel},
        "trigger_id": f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:10]}",
        "channel": {"id": channel, "name": "general"},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b1",
                "value": value,
                "action_ts": action_ts if action_ts is not None else f"{time.time():.6f}",
            }
        ],
    }
    body, headers = form({"payload": json.dumps(payload)})
    return http_v2(body, headers)


def view_submission(
    view: dict[str, Any],
    values: dict[str, str],
    *,
    team: str = "T0001",
    user: str = "U0001",
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A modal submitted: ``view`` as the bot opened it (``views.open``), each input block
    answered from ``values`` (by block id), as Slack sends it."""
    state: dict[str, Any] = {}
    for block in view.get("blocks") or []:
        if block.get("type") != "input" or block["block_id"] not in values:
            continue
        element = block["element"]
        value = values[block["block_id"]]
        if element["type"] == "static_select":
            entry = {"type": "static_select", "selected_option": {
                "text": {"type": "plain_text", "text": value}, "value": value}}  # fmt: skip
        else:
            entry = {"type": element["type"], "value": value}
        state[block["block_id"]] = {element["action_id"]: entry}
    payload = {
        "type": "view_submission",
        "team": {"id": team, "domain": "example"},
        "user": {"id": user, "username": "ada", "name": "ada", "team_id": team},
        "api_app_id": "A0001",
        "token": "legacy-unused",
        "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:10]}",
        "view": {
            **view,
            "id": "V0001",
            "team_id": team,
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "state": {"values": state},
            "app_id": "A0001",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    body, headers = form({"payload": json.dumps(payload)})
    return http_v2(body, headers)


def mention_body(
    text: str,
    *,
    team: str = "T0001",
    channel: str = "C0001",
    user: str = "U0001",
    ts: str | None = None,
    thread_ts: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An ``app_mention`` (in a thread when ``thread_ts`` is given)."""
    now = time.time()
    ts = ts or f"{int(now)}.{uuid.uuid4().int % 1_000_000:06d}"
    event: dict[str, Any] = {
        "type": "app_mention",
        "channel": channel,
        "user": user,
        "text": f"<@{BOT_USER}> {text}",
        "ts": ts,
        "event_ts": ts,
        "client_msg_id": str(uuid.uuid4()),
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    body = dm_body("", team=team, event_id=event_id)
    body["event"] = event
    return body


def assistant_body(
    kind: str = "assistant_thread_started",
    *,
    team: str = "T0001",
    channel: str = "D0001",
    user: str = "U0001",
    thread_ts: str = "1712345678.000100",
    viewing: str | None = "C0VIEWED",
    event_id: str | None = None,
) -> dict[str, Any]:
    """``assistant_thread_started`` / ``assistant_thread_context_changed`` as Slack sends it."""
    context: dict[str, Any] = {"team_id": team, "enterprise_id": None}
    if viewing is not None:
        context["channel_id"] = viewing
    body = dm_body("", team=team, event_id=event_id)
    body["event"] = {
        "type": kind,
        "assistant_thread": {
            "user_id": user,
            "context": context,
            "channel_id": channel,
            "thread_ts": thread_ts,
        },
        "event_ts": f"{int(time.time())}.000200",
    }
    return body
