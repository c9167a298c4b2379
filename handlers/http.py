"""API Gateway (HTTP API v2, REST v1) and Function URL events <-> a small request value.

Pure functions at the edge, in the manner of Bolt's ``to_bolt_request``/``to_aws_response``,
but keeping the body as the exact bytes that were signed (base64 decoded when flagged).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


class BadRequest(ValueError):
    """The Lambda event is not an HTTP request we can read."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    query: Mapping[str, list[str]] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def cookie(self, name: str) -> str | None:
        """A cookie's value (the ``Cookie`` header's first of that name)."""
        for part in (self.header("cookie") or "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None

    def first(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


def from_lambda(event: Mapping[str, Any]) -> HttpRequest:
    """Read an API Gateway v2 / Function URL or REST v1 proxy event.

    Raises:
        BadRequest: not an HTTP event, or a body flagged base64 that is not.
    """
    if not isinstance(event, Mapping):
        raise BadRequest("event is not an object")
    context = event.get("requestContext") or {}
    http = context.get("http") if isinstance(context, Mapping) else None
    if isinstance(http, Mapping):  # HTTP API v2 and Function URLs
        method = str(http.get("method", ""))
        path = str(event.get("rawPath") or http.get("path") or "/")
        query = parse_qs(str(event.get("rawQueryString") or ""), keep_blank_values=True)
    elif "httpMethod" in event:  # REST API v1
        method = str(event["httpMethod"])
        path = str(event.get("path") or "/")
        multi = event.get("multiValueQueryStringParameters") or {}
        single = event.get("queryStringParameters") or {}
        query = {str(k): [str(x) for x in v] for k, v in multi.items()} or {
            str(k): [str(v)] for k, v in single.items()
        }
    else:
        raise BadRequest("not an API Gateway or Function URL event")

    headers: dict[str, str] = {}
    for name, value in (event.get("headers") or {}).items():
        if value is not None:
            headers[str(name).lower()] = str(value)
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if values and str(name).lower() not in headers:
            headers[str(name).lower()] = ",".join(str(v) for v in values)
    cookies = event.get("cookies")  # HTTP API v2 moves the Cookie header here
    if isinstance(cookies, list) and cookies and "cookie" not in headers:
        headers["cookie"] = "; ".join(str(c) for c in cookies)

    raw = event.get("body")
    if raw is None:
        body = b""
    elif event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest("body flagged base64 is not base64") from exc
    else:
        body = str(raw).encode("utf-8")
    return HttpRequest(method=method.upper(), path=path, body=body, headers=headers, query=query)


def response(
    status: int,
    body: str | bytes = "",
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A proxy-integration response understood by v1, v2 and Function URLs alike."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    out = {"content-type": content_type} if text else {}
    out.update(headers or {})
    return {"statusCode": status, "headers": out, "body": text, "isBase64Encoded": False}
