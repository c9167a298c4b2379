"""Large states: past the threshold the state goes to S3 (moto) or a directory, written before
the commit under a content-addressed name, the item keeping a pointer."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sessions import ConversationKey, Sessions, TurnReport
from sessions.blobs import DirectoryBlobs, S3Blobs, is_pointer, user_prefix
from sessions.dynamodb import DynamoDBStore, create_table
from sessions.encryption import Envelope, LocalKeyring, sealed
from sessions.errors import CodecError, StoreUnavailableError
from sessions.sqlite import SQLiteStore
from sessions.store import Store
from tests.conftest import SerialClient
from tests.fakes import StoreWrapper

ADA = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
BOB = ConversationKey.slack(team="T0001", channel="D0001", user="U0002")
MB = 1024 * 1024


def big(state: dict[str, Any], size: int) -> tuple[dict[str, Any], list[str], None]:
    """A state of about ``size`` bytes that does not compress (hex of random bytes)."""
    blob = os.urandom(size // 2).hex()
    return {"n": state.get("n", 0) + 1, "blob": blob}, [], None


def add(state: dict[str, Any], text: str) -> tuple[dict[str, Any], list[str], None]:
    return {**state, "items": [*state.get("items", []), text]}, [], None


@pytest.fixture
def aws() -> Iterator[tuple[Store, S3Blobs, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "sessions")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="large-states")
        store = DynamoDBStore("sessions", client=SerialClient(dynamodb))  # type: ignore[arg-type]
        yield store, S3Blobs("large-states", client=SerialClient(s3)), s3


def objects(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket="large-states").get("Contents", [])]


def test_a_1_mb_state_goes_through_s3_and_reads_back(aws: tuple[Store, S3Blobs, Any]) -> None:
    store, large, s3 = aws
    reports: list[TurnReport] = []
    sessions = Sessions(store, large=large, observer=reports.append)
    first = sessions.run(ADA, "ev1", big, MB)
    snap = store.load(ADA, None)
    assert snap.state is not None and is_pointer(snap.state.blob) and len(snap.state.blob) < 200
    [name] = objects(s3)
    assert name.startswith(user_prefix(ADA.pk) + "/") and ADA.user not in name
    conversation = sessions.get(ADA)
    assert conversation is not None and conversation.state == first.state
    assert len(conversation.state["blob"]) == MB
    assert (reports[0].large_reads, reports[0].large_writes) == (0, 1)  # said in its metrics

    second = sessions.run(ADA, "ev2", big, MB)
    assert second.state["n"] == 2
    assert (reports[1].large_reads, reports[1].large_writes) == (1, 1)
    # A small state stays in its item, and says so.
    sessions.run(BOB, "ev1", add, "small")
    assert not is_pointer(store.load(BOB, None).state.blob)  # type: ignore[union-attr]
    assert (reports[2].large_reads, reports[2].large_writes) == (0, 0)


class CrashOnCommit(StoreWrapper):
    """The Lambda dies after the object's write, before the commit lands."""

    def commit(self, *args: Any, **kwargs: Any) -> None:
        raise StoreUnavailableError("the container was killed mid-turn")


def test_a_crash_between_the_s3_write_and_the_commit_changes_nothing_visible(
    aws: tuple[Store, S3Blobs, Any],
) -> None:
    store, large, s3 = aws
    sessions = Sessions(store, large=large)
    sessions.run(ADA, "ev1", big, 200_000)
    before = store.user_items(ADA.user_key)
    state_before = sessions.get(ADA)
    crashing = Sessions(CrashOnCommit(store), large=large)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailableError):
        crashing.run(ADA, "ev2", big, 200_000)
    assert len(objects(s3)) == 2  # the orphan is there, and nothing points at it
    assert store.user_items(ADA.user_key) == before
    assert sessions.get(ADA) == state_before
    # The redelivery completes the turn, exactly once.
    assert sessions.run(ADA, "ev2", big, 200_000).state["n"] == 2
    assert sessions.run(ADA, "ev2", big, 200_000).duplicate


def test_no_lost_update_with_encryption_and_s3_on(aws: tuple[Store, S3Blobs, Any]) -> None:
    store, large, _ = aws
    sessions = Sessions(
        store,
        large=large,
        large_above=0,  # every state through S3
        encryption=Envelope(LocalKeyring(os.urandom(32))),
        max_attempts=60,
        backoff=0.002,
        max_backoff=0.02,
    )
    barrier = threading.Barrier(6)

    def deliver(n: int) -> None:
        barrier.wait()
        sessions.run(ADA, f"ev{n}", add, f"item {n}")
        sessions.run(ADA, f"ev{n}", add, f"item {n}")  # and its redelivery

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(deliver, range(6)))
    conversation = sessions.get(ADA)
    assert conversation is not None
    assert sorted(conversation.state["items"]) == [f"item {n}" for n in range(6)]
    assert conversation.version == 6


def test_the_directory_store_behaves_alike_on_sqlite(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    sessions = Sessions(store, large=DirectoryBlobs(tmp_path / "large"))
    result = sessions.run(ADA, "ev1", big, MB)
    assert is_pointer(store.load(ADA, None).state.blob)  # type: ignore[union-attr]
    conversation = sessions.get(ADA)
    assert conversation is not None and conversation.state == result.state
    files = list((tmp_path / "large").rglob("*"))
    assert len([f for f in files if f.is_file()]) == 1


def test_a_pointer_moved_to_another_user_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    sessions = Sessions(store, large=DirectoryBlobs(tmp_path / "large"))
    sessions.run(ADA, "ev1", big, 200_000)
    sessions.run(BOB, "ev1", add, "bob")
    pointer = store.load(ADA, None).state.blob  # type: ignore[union-attr]
    with store._conn() as conn:  # an attacker with write access to the table
        conn.execute("UPDATE items SET data = ? WHERE pk = ? AND sk = ?", (pointer, BOB.pk, BOB.sk))
    with pytest.raises(CodecError, match="not this user's"):
        sessions.get(BOB)


def test_a_missing_object_is_a_dead_letter_not_a_5xx_loop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    sessions = Sessions(store, large=DirectoryBlobs(tmp_path / "large"))
    sessions.run(ADA, "ev1", big, 200_000)
    for f in (tmp_path / "large").rglob("*"):
        if f.is_file():
            f.unlink()
    with pytest.raises(CodecError, match="missing") as caught:
        sessions.run(ADA, "ev2", add, "x")
    assert caught.value.recorded


def test_sealed_large_states_are_encrypted_in_s3(aws: tuple[Store, S3Blobs, Any]) -> None:
    store, large, s3 = aws
    sessions = Sessions(store, large=large, encryption=Envelope(LocalKeyring(os.urandom(32))))
    sessions.run(ADA, "ev1", add, "x" * 100_000)  # compresses below the threshold: inline
    assert objects(s3) == []
    sessions.run(ADA, "ev2", big, 300_000)
    [name] = objects(s3)
    body = s3.get_object(Bucket="large-states", Key=name)["Body"].read()
    assert sealed(body)


def test_deleting_a_user_deletes_their_objects(aws: tuple[Store, S3Blobs, Any]) -> None:
    store, large, s3 = aws
    sessions = Sessions(store, large=large)
    sessions.run(ADA, "ev1", big, 200_000)
    sessions.run(ADA, "ev2", big, 200_000)
    sessions.run(BOB, "ev1", big, 200_000)
    assert len(objects(s3)) == 3
    sessions.delete_user(ADA.user_key)
    assert [n.split("/")[0] for n in objects(s3)] == [user_prefix(BOB.pk)]
    assert sessions.get(ADA) is None


def test_s3_errors_are_ours(aws: tuple[Store, S3Blobs, Any]) -> None:
    from sessions.errors import StoreConfigError

    _, large, s3 = aws
    with pytest.raises(CodecError, match="missing"):
        large.get(f"{user_prefix(ADA.pk)}/{'0' * 64}")  # permanent: a dead letter
    with pytest.raises(StoreConfigError, match="no-such-bucket"):
        S3Blobs("no-such-bucket", client=s3).put("x/y", b"z")


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "",  # the store's root: a directory
        "{prefix}",  # the user's own folder: a directory
        "{prefix}/" + "a" * 5000,
        "{prefix}/ab\x00cd",
        "{prefix}/../{prefix}/x",
        "\udcff",
    ],
    ids=["parent", "absolute", "root", "folder", "over-long", "nul", "dot-dot", "undecodable"],
)
def test_a_hostile_pointer_is_a_dead_letter_never_a_5xx(tmp_path: Path, name: str) -> None:
    """Whoever can write the table can plant any pointer: it is refused by its name, before
    any read of the large-state store, as a permanent error (a dead letter, answered 200 at
    the edge), not as the store failing (5xx on every redelivery)."""
    store = SQLiteStore(tmp_path / "s.sqlite3")
    sessions = Sessions(store, large=DirectoryBlobs(tmp_path / "large"))
    sessions.run(ADA, "ev1", big, 200_000)
    planted = b"s" + name.format(prefix=user_prefix(ADA.pk)).encode("utf-8", "surrogateescape")
    with store._conn() as conn:  # an attacker with write access to the table
        conn.execute("UPDATE items SET data = ? WHERE pk = ? AND sk = ?", (planted, ADA.pk, ADA.sk))
    with pytest.raises(CodecError, match="pointer") as caught:
        sessions.run(ADA, "ev2", add, "x")
    assert caught.value.recorded
