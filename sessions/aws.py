"""Calls to the AWS services besides DynamoDB that the session core uses (KMS for envelope
encryption, S3 for large states): a client sized for a webhook's deadline, built on first use
(boto3 is imported here, not at import time), and botocore's errors as ours."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sessions.errors import SessionError, StoreUnavailableError


def make_client(service: str, *, read_timeout: float) -> Any:
    """A boto3 client with short timeouts and botocore's standard retries (3 attempts)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=2,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": 3},
    )
    return boto3.client(service, config=config)  # type: ignore[call-overload]


def call(
    client: Any,
    operation: str,
    *,
    service: str,
    classify: Callable[[str], SessionError | None],
    **kwargs: Any,
) -> Any:
    """``client.<operation>(**kwargs)``; a ``ClientError`` becomes what ``classify`` makes of
    its code, else (throttled, 5xx, unreachable) ``StoreUnavailableError``: may heal."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, operation)(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise (classify(code) or StoreUnavailableError(f"{service} {operation}: {code}")) from exc
    except BotoCoreError as exc:
        raise StoreUnavailableError(f"{service} {operation} failed: {exc}") from exc
