"""The hand-written minimal handlers of ``benchmarks.minimal`` as one Lambda function: the
yardstick of the cold start (``benchmarks.cold_packaged``).

What a careful developer deploys for one bot turn and nothing more: its own file, nothing
else in the zip. The runtime's boto3 and the DynamoDB client built at import (module scope,
kept for warm calls), secrets read from the environment once, and the replies posted with
urllib3, which the runtime already has (botocore's HTTP client): no dependency shipped. The
route is the request's path and content type (a slash command is a form, an event JSON).
"""

from __future__ import annotations

import json as _json
import os
from typing import Any

import boto3
import urllib3

from benchmarks.minimal import Minimal


class _Response:
    def __init__(self, status: int) -> None:
        self.status = status

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise RuntimeError(f"HTTP {self.status}")


class _Http:
    """requests' ``post`` over one urllib3 pool (keep-alive)."""

    def __init__(self) -> None:
        self.pool = urllib3.PoolManager()

    def post(
        self,
        url: str,
        *,
        json: Any,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        timeout: float,
    ) -> _Response:
        if params:
            url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
        answer = self.pool.request(
            "POST",
            url,
            body=_json.dumps(json).encode(),
            headers={"content-type": "application/json", **(headers or {})},
            timeout=timeout,
        )
        return _Response(answer.status)


_minimal = Minimal(
    boto3.client("dynamodb"),
    os.environ["SESSIONS_TABLE"],
    slack_secret=os.environ["SLACK_SIGNING_SECRET"],
    app_secret=os.environ["MESSENGER_APP_SECRET"],
    slack_api_url=os.environ["SLACK_API_URL"],
    graph_url=os.environ["MESSENGER_API_URL"],
    http=_Http(),
)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    path = event.get("rawPath") or event.get("path") or ""
    if path.startswith("/messenger"):
        return _minimal.messenger(event)
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _minimal.slack_command(event)
    return _minimal.slack_event(event)
