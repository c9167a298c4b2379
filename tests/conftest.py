"""Shared fixtures: every store the contract suite runs over, and AWS's DynamoDB Local."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Tests never touch a real AWS account: fixed fake credentials, a fixed region.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "SESSIONS_TABLE"):
    os.environ.pop(_name, None)

from sessions.dynamodb import DynamoDBStore, create_table, make_client  # noqa: E402
from sessions.sqlite import SQLiteStore  # noqa: E402
from sessions.store import Store  # noqa: E402
from tests import dynamodb_local  # noqa: E402

_tables = itertools.count(1)


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """One DynamoDB Local for the whole test session (in memory, free loopback port)."""
    try:
        with dynamodb_local.running() as server:
            yield server.endpoint
    except dynamodb_local.DynamoDBLocalUnavailable as exc:
        # Never a skip: CI must install what it needs, and say what is missing when it can't.
        pytest.fail(f"DynamoDB Local is unavailable: {exc}", pytrace=False)


@pytest.fixture
def local_client(dynamodb_endpoint: str) -> Any:
    return make_client(endpoint_url=dynamodb_endpoint)


@pytest.fixture
def local_table(local_client: Any) -> str:
    """A fresh table on DynamoDB Local for one test."""
    name = f"sessions-test-{next(_tables)}"
    create_table(local_client, name)
    return name


def _sqlite(tmp_path: Path) -> Iterator[Store]:
    store = SQLiteStore(tmp_path / "sessions.sqlite3")
    yield store
    store.close()


class SerialClient:
    """Runs one request at a time through a client, as a server would.

    moto's in-process backend is not thread-safe (a transaction deep-copies tables that other
    threads are writing). Serialising each request keeps DynamoDB's semantics (every request
    is atomic) while our own load -> turn -> commit sequences still interleave freely.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


def _moto() -> Iterator[Store]:
    import boto3
    from moto import mock_aws

    from sessions.blobs import S3Blobs
    from tests.contract import sealing

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "sessions")
        store = DynamoDBStore("sessions", client=SerialClient(client))  # type: ignore[arg-type]
        # The contract suite's large-state mode puts this store's large states in S3 (moto).
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="large-states")
        sealing.S3_FOR[id(store)] = S3Blobs("large-states", client=SerialClient(s3))
        yield store
        sealing.S3_FOR.pop(id(store), None)


@pytest.fixture(params=["sqlite", "moto", "dynamodb_local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every store the contract suite must hold for."""
    if request.param == "sqlite":
        yield from _sqlite(tmp_path)
    elif request.param == "moto":
        yield from _moto()
    else:
        client = request.getfixturevalue("local_client")
        table = request.getfixturevalue("local_table")
        yield DynamoDBStore(table, client=client)
