"""Envelope encryption of stored sessions: KMS on moto, a local master key, and the requests a
turn makes with encryption on (DynamoDB Local)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from handlers.settings import ConfigError, from_env
from handlers.store import encryption_from_settings
from sessions import ConversationKey, Sessions, codec
from sessions.dynamodb import DynamoDBStore, make_client
from sessions.encryption import DecryptError, Envelope, KMSKeyring, LocalKeyring, sealed
from sessions.errors import CodecError, StoreConfigError
from sessions.sqlite import SQLiteStore
from sessions.store import StoredState
from tests.contract.test_guarantees import Clock
from tests.integration.test_request_budget import Meter, counter, run

ADA = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
BOB = ConversationKey.slack(team="T0001", channel="D0001", user="U0002")
SECRET_TEXT = "my card number is 4111"


def add(state: dict[str, Any], text: str) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    return {"items": [*state.get("items", []), text]}, [f"added {text}"], {"text": "ok"}


@pytest.fixture
def kms() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


def _key(kms: Any) -> str:
    return str(kms.create_key(Description="sessions")["KeyMetadata"]["Arn"])


class CountingKMS:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            return getattr(self.client, name)(**kwargs)

        return call


def _stored(store: Any, key: ConversationKey) -> StoredState:
    snap = store.load(key, None)
    assert snap.state is not None
    return snap.state  # type: ignore[no-any-return]


def test_kms_round_trip_caches_the_data_key(kms: Any, tmp_path: Any) -> None:
    counting = CountingKMS(kms)
    store = SQLiteStore(tmp_path / "s.sqlite3")
    sessions = Sessions(store, encryption=Envelope(KMSKeyring(_key(kms), client=counting)))
    for n in range(5):
        result = sessions.run(ADA, f"ev{n}", add, SECRET_TEXT)
    assert result.state == {"items": [SECRET_TEXT] * 5}
    assert counting.calls == ["generate_data_key"]  # once per container, not per turn
    blob = _stored(store, ADA).blob
    assert sealed(blob) and SECRET_TEXT.encode() not in blob
    conversation = sessions.get(ADA)
    assert conversation is not None and conversation.state == {"items": [SECRET_TEXT] * 5}

    # Another container (a fresh envelope) unwraps the data key once, then reads from cache.
    other = CountingKMS(kms)
    second = Sessions(store, encryption=Envelope(KMSKeyring(_key_of(blob), client=other)))
    assert second.get(ADA) is not None and second.get(ADA) is not None
    assert other.calls == ["decrypt"]


def _key_of(blob: bytes) -> str:
    return blob[3 : 3 + blob[2]].decode()


def test_tampering_is_refused_and_the_event_dead_lettered(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    envelope = Envelope(LocalKeyring(os.urandom(32)))
    sessions = Sessions(store, encryption=envelope)
    sessions.run(ADA, "ev1", add, "one")
    item = _stored(store, ADA)
    flipped = bytearray(item.blob)
    flipped[-20] ^= 0x01
    with pytest.raises(DecryptError, match="authentication"):
        envelope.open(bytes(flipped), aad=f"{ADA.pk}\0{ADA.sk}\0state".encode())
    _overwrite(store, ADA, bytes(flipped))
    with pytest.raises(CodecError) as caught:
        sessions.run(ADA, "ev2", add, "two")
    assert caught.value.recorded  # a dead letter: a redelivery will not loop
    assert _stored(store, ADA).blob == bytes(flipped)  # left as it was, for inspection


def _overwrite(store: SQLiteStore, key: ConversationKey, blob: bytes) -> None:
    with store._conn() as conn:  # the test plays an attacker with write access to the file
        conn.execute("UPDATE items SET data = ? WHERE pk = ? AND sk = ?", (blob, key.pk, key.sk))


def test_a_state_moved_to_another_user_does_not_open(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    sessions = Sessions(store, encryption=Envelope(LocalKeyring(os.urandom(32))))
    sessions.run(ADA, "ev1", add, "ada's secret")
    sessions.run(BOB, "ev1", add, "bob's")
    _overwrite(store, BOB, _stored(store, ADA).blob)
    with pytest.raises(DecryptError, match="moved"):
        sessions.get(BOB)
    exported = sessions.export(BOB.user_key)["conversations"][0]["state"]
    assert "undecodable" in exported and "ada" not in str(exported)


def test_a_key_id_other_than_the_trusted_ones_is_refused(kms: Any, tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    attacker = Sessions(store, encryption=Envelope(KMSKeyring(_key(kms), client=kms)))
    attacker.run(ADA, "ev1", add, "planted")  # sealed under a key we do not trust
    ours = Sessions(store, encryption=Envelope(KMSKeyring(_key(kms), client=kms)))
    with pytest.raises(DecryptError, match="not trusted"):
        ours.get(ADA)
    # KMS itself refuses a wrapped key presented under another key id.
    blob = _stored(store, ADA).blob
    wrapped_len = int.from_bytes(blob[3 + blob[2] : 5 + blob[2]], "big")
    wrapped = blob[5 + blob[2] : 5 + blob[2] + wrapped_len]
    mine = _key(kms)
    # (AWS answers IncorrectKeyException, a DecryptError; moto answers AccessDenied.)
    with pytest.raises((DecryptError, StoreConfigError), match="KMS"):
        KMSKeyring(mine, client=kms).unwrap(mine, wrapped)
    # Locally: a key that is not configured names itself.
    local = Envelope(LocalKeyring(os.urandom(32)))
    other = Envelope(LocalKeyring(os.urandom(32)))
    aad = b"a"
    with pytest.raises(DecryptError, match="not configured"):
        other.open(local.seal(codec.encode(1), aad=aad), aad=aad)


def test_rotation_old_data_keys_and_old_master_keys_still_read(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    now = [0.0]
    old_master, new_master = os.urandom(32), os.urandom(32)
    first = Envelope(LocalKeyring(old_master), data_key_ttl=60, clock=lambda: now[0])
    Sessions(store, encryption=first).run(ADA, "ev1", add, "under the old key")
    now[0] = 61  # the data key ages out: the next value is sealed under a fresh one
    Sessions(store, encryption=first).run(BOB, "ev1", add, "under a new data key")
    assert _header(_stored(store, ADA).blob) != _header(_stored(store, BOB).blob)

    rotated = Envelope(LocalKeyring(new_master, old=[old_master]))
    sessions = Sessions(store, encryption=rotated)
    result = sessions.run(ADA, "ev2", add, "after rotation")
    assert result.state == {"items": ["under the old key", "after rotation"]}
    assert _key_of(_stored(store, ADA).blob) == LocalKeyring.id_of(new_master)  # resealed
    bob = sessions.get(BOB)
    assert bob is not None and bob.state == {"items": ["under a new data key"]}
    # Without the old key listed, what it sealed no longer opens.
    assert Sessions(store, encryption=Envelope(LocalKeyring(new_master))).get(ADA) is not None
    with pytest.raises(DecryptError):
        Sessions(store, encryption=Envelope(LocalKeyring(new_master))).get(BOB)


def _header(blob: bytes) -> bytes:
    return blob[: 5 + blob[2] + int.from_bytes(blob[3 + blob[2] : 5 + blob[2]], "big")]


def test_clear_values_still_read_and_are_sealed_on_their_next_write(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    Sessions(store).run(ADA, "ev1", add, "in clear")
    assert not sealed(_stored(store, ADA).blob)
    sessions = Sessions(store, encryption=Envelope(LocalKeyring(os.urandom(32))))
    assert sessions.run(ADA, "ev2", add, "sealed").state == {"items": ["in clear", "sealed"]}
    assert sealed(_stored(store, ADA).blob)
    # Turning encryption off again does not silently lose data: it says what is missing.
    with pytest.raises(DecryptError, match="SESSIONS_ENCRYPTION_KEY"):
        Sessions(store).get(ADA)


def test_responses_outboxes_and_replay_payloads_are_sealed_too(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    sessions = Sessions(store, encryption=Envelope(LocalKeyring(os.urandom(32))), sent_mark=True)
    sessions.run(ADA, "ev1", add, SECRET_TEXT)

    def broken(state: Any, event: Any) -> Any:
        raise RuntimeError("bug")

    with pytest.raises(CodecError.__mro__[1]):  # PermanentError
        sessions.run(ADA, "ev2", broken, None, dead_letter={"text": SECRET_TEXT})
    for sk, item in store.user_items(ADA.user_key):
        for value in (getattr(item, n, None) for n in ("blob", "response", "outbox", "payload")):
            assert value is None or (sealed(value) and SECRET_TEXT.encode() not in value), sk
    # A duplicate still gets its recorded response; a dead letter still replays.
    assert sessions.run(ADA, "ev1", add, SECRET_TEXT).response == {"text": "ok"}
    [(_, letter)] = sessions.dead_letters(ADA.user_key)
    assert codec.decode(letter.payload or b"") == {"text": SECRET_TEXT}


def test_encryption_adds_no_dynamodb_request_on_a_warm_container(
    local_client: Any, local_table: str, dynamodb_endpoint: str
) -> None:
    clock = Clock()  # in the future: DynamoDB Local sweeps expired items
    meter = Meter(local_client, make_client(endpoint_url=dynamodb_endpoint))
    envelope = Envelope(LocalKeyring(os.urandom(32)))
    store = DynamoDBStore(local_table, client=local_client)
    sessions = Sessions(store, encryption=envelope, clock=clock)
    base = {"pad": "x" * 150}  # about 200 B of state, as the budget tests use
    run(sessions, clock, "ev0", counter(base))
    meter.take()
    run(sessions, clock, "ev1", counter(base))
    calls, read_units, write_units = meter.take()
    meter.billing.close()
    assert sum(calls.values()) == 2 and (read_units, write_units) == (1.0, 1.0)
    assert envelope.key_requests == 1  # the container's one data key


def test_settings_select_the_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    assert encryption_from_settings(from_env({})) is None
    envelope = encryption_from_settings(from_env({"SESSIONS_ENCRYPTION_KEY": key}))
    assert envelope is not None and envelope.keyring.key_id.startswith("local:")
    arn = "arn:aws:kms:us-east-1:123456789012:key/abc"
    envelope = encryption_from_settings(from_env({"SESSIONS_KMS_KEY_ID": arn}))
    assert envelope is not None and envelope.keyring.key_id == arn
    with pytest.raises(ConfigError, match="SESSIONS_ENCRYPTION_KEY"):
        encryption_from_settings(from_env({"SESSIONS_ENCRYPTION_KEY": "short"}))
    with pytest.raises(ConfigError, match="not both"):
        encryption_from_settings(
            from_env({"SESSIONS_ENCRYPTION_KEY": key, "SESSIONS_KMS_KEY_ID": arn})
        )


def test_a_dead_letters_description_is_sealed_its_classes_in_clear(tmp_path: Any) -> None:
    """A bot's exception may quote the user: with encryption on, the dead letter keeps its
    description sealed (bound to the conversation), its error classes in clear; it opens for
    whoever holds the key, and says so to whoever does not."""
    from sessions import TurnError
    from sessions.store import EventRecord

    store = SQLiteStore(tmp_path / "s.sqlite3")
    key = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
    envelope = Envelope(LocalKeyring(os.urandom(32)))
    sessions = Sessions(store, encryption=envelope)

    def quoting(state: Any, text: str) -> Any:
        raise KeyError(f"no item {text}")

    with pytest.raises(TurnError):
        sessions.run(key, "ev1", quoting, "my private plan", dead_letter={"job": 1})
    [(_, stored)] = [i for i in store.user_items(key.user_key) if isinstance(i[1], EventRecord)]
    assert stored.error is not None and "my private plan" not in stored.error
    assert stored.error.startswith("TurnError < KeyError sealed:")
    [(_, letter)] = sessions.dead_letters(key.user_key)
    assert letter.error is not None and "my private plan" in letter.error
    again = sessions.run(key, "ev1", quoting, "my private plan")
    assert again.failed and again.error is not None and "my private plan" in again.error
    [(_, unopened)] = Sessions(store).dead_letters(key.user_key)
    assert unopened.error == "TurnError < KeyError (description sealed; cannot open it here)"


def test_strict_mode_refuses_a_clear_value_and_the_migration_reaches_it(tmp_path: Any) -> None:
    """Encryption turned on over clear data: first without strict mode, each conversation's
    next write seals it; then strict mode reads the sealed ones and refuses a clear one
    (planted, or never rewritten) as a dead letter, never sealing it silently."""
    from handlers.settings import from_env
    from handlers.store import sessions_from_settings

    store = SQLiteStore(tmp_path / "s.sqlite3")
    ada = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
    bob = ConversationKey.slack(team="T0001", channel="D0002", user="U0002")
    Sessions(store).run(ada, "ev1", add, "clear a")
    Sessions(store).run(bob, "ev1", add, "clear b")
    secret = base64.b64encode(os.urandom(32)).decode()
    env = {"SESSIONS_ENCRYPTION_KEY": secret, "SESSIONS_DB": str(tmp_path / "s.sqlite3")}

    # Step 1: encryption on, strict off: ada's conversation is touched, and so sealed.
    migrating = sessions_from_settings(from_env(env), store)
    migrating.run(ada, "ev2", add, "sealed now")
    assert sealed(store.load(ada, None).state.blob)  # type: ignore[union-attr]
    assert not sealed(store.load(bob, None).state.blob)  # type: ignore[union-attr]

    # Step 2: strict on: ada reads; bob's clear state is refused, as a dead letter.
    strict = sessions_from_settings(from_env({**env, "SESSIONS_REQUIRE_SEALED": "on"}), store)
    assert strict.require_sealed
    assert strict.run(ada, "ev3", add, "x").state["items"][-1] == "x"
    with pytest.raises(DecryptError, match="in clear") as refused:
        strict.run(bob, "ev2", add, "y")
    assert refused.value.recorded  # a dead letter: the edge answers 200, never a 5xx loop
    assert [sk for sk, _ in strict.dead_letters(bob.user_key)]
    assert not sealed(store.load(bob, None).state.blob)  # type: ignore[union-attr]
