"""Engine errors become ours, with the stored item attached where DynamoDB returns it."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from sessions import (
    BusyError,
    ConflictError,
    ConversationKey,
    DuplicateEventError,
    Sessions,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)
from sessions.dynamodb import DynamoDBStore, make_client
from sessions.sqlite import SQLiteStore
from sessions.store import EventRecord, EventWrite, Store, StoredState

KEY = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")


def count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], None]:
    return {"n": state.get("n", 0) + 1}, [], None


def _commit(store: Store, *, expected: int | None, event_id: str) -> None:
    """A commit expecting a state item at version ``expected`` (``None``: no item)."""
    current = store.load(KEY, None).state
    believed = None
    if expected is not None:
        assert current is not None
        believed = StoredState(
            version=expected,
            blob=current.blob,
            expires_at=current.expires_at,
            updated_at=current.updated_at,
            generation=current.generation,
        )
    store.commit(
        EventWrite(
            KEY,
            KEY.event_sk(event_id),
            EventRecord(version=9, committed_at=1, expires_at=2_000_000_000),
            tombstone=None,
            now=int(time.time()),
            state=StoredState(version=9, blob=b"j{}", expires_at=2_000_000_000, updated_at=1),
            expected=believed,
        )
    )


def test_conflict_and_duplicate_carry_the_stored_item(store: Store) -> None:
    Sessions(store).run(KEY, "Ev1", lambda s, e: ({"n": 1}, [], "first"), None)
    before = store.user_items(KEY.user_key)

    with pytest.raises(ConflictError) as conflict:
        _commit(store, expected=7, event_id="Ev2")
    with pytest.raises(DuplicateEventError) as duplicate:
        _commit(store, expected=1, event_id="Ev1")
    assert store.user_items(KEY.user_key) == before
    assert conflict.value.current is not None and conflict.value.current.version == 1
    assert duplicate.value.record is not None and duplicate.value.record.committed_at > 0
    # The DynamoDB store keeps a record inline without the version it committed.
    assert duplicate.value.record.version == (0 if isinstance(store, DynamoDBStore) else 1)


def test_missing_table_is_a_config_error(dynamodb_endpoint: str) -> None:
    store = DynamoDBStore("no-such-table", client=make_client(endpoint_url=dynamodb_endpoint))
    with pytest.raises(StoreConfigError, match="no-such-table"):
        store.load(KEY, None)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("ProvisionedThroughputExceededException", StoreUnavailableError),
        ("ThrottlingException", StoreUnavailableError),
        ("InternalServerError", StoreUnavailableError),
        ("ValidationException", StoreError),
    ],
)
def test_client_errors_are_converted(
    dynamodb_endpoint: str, code: str, error: type[Exception]
) -> None:
    client = make_client(endpoint_url=dynamodb_endpoint)
    stub = Stubber(client)
    stub.add_client_error("get_item", service_error_code=code, http_status_code=400)
    with stub, pytest.raises(error) as caught:
        Sessions(DynamoDBStore("t", client=client)).run(KEY, "Ev1", count, None)
    from botocore.exceptions import ClientError

    assert isinstance(caught.value.__cause__, ClientError)


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("ThrottlingError", StoreUnavailableError),
        ("TransactionConflict", BusyError),  # a lost race, retried until max_attempts
        ("ValidationError", StoreError),
    ],
)
def test_cancelled_commits_are_converted(
    dynamodb_endpoint: str, reason: str, error: type[Exception]
) -> None:
    client = make_client(endpoint_url=dynamodb_endpoint)
    stub = Stubber(client)
    for _ in range(2):
        stub.add_response("get_item", {})  # a new conversation: its commit is a transaction
        stub.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            http_status_code=400,
            modeled_fields={"CancellationReasons": [{"Code": reason}, {"Code": "None"}]},
        )
    sessions = Sessions(DynamoDBStore("t", client=client), max_attempts=2, sleep=lambda s: None)
    with stub, pytest.raises(error):
        sessions.run(KEY, "Ev1", count, None)


def _increment_in_process(path: str, worker: int) -> None:
    sessions = Sessions(SQLiteStore(path), max_attempts=100, backoff=0.001)
    for i in range(50):
        sessions.run(KEY, f"p{worker}-{i}", count, None)


def test_sqlite_is_safe_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    SQLiteStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_increment_in_process, args=(path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    conversation = Sessions(SQLiteStore(path)).get(KEY)
    assert conversation is not None and conversation.state == {"n": 200}
