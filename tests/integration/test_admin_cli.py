"""The sessions admin CLI over SQLite and DynamoDB Local."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from handlers.tools import admin
from sessions import ConversationKey, Sessions, TurnError
from sessions.dynamodb import DynamoDBStore
from sessions.sqlite import SQLiteStore
from sessions.store import Store
from tests.keys import stored

ADA = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
ADA_2 = ConversationKey.slack(team="T0001", channel="C0002", user="U0001")
BOB = ConversationKey.slack(team="T0001", channel="D0002", user="U0002")
EVE = ConversationKey.messenger(page="100", psid="200")


def add(state: dict[str, Any], text: str) -> tuple[dict[str, Any], list[str], None]:
    return {"items": [*state.get("items", []), text]}, [], None


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Store, list[str]]:
    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    store: Store
    if request.param == "sqlite":
        path = tmp_path / "admin.sqlite3"
        store, flags = SQLiteStore(path), ["--db", str(path)]
    else:
        table = request.getfixturevalue("local_table")
        monkeypatch.setenv(
            "AWS_ENDPOINT_URL_DYNAMODB", request.getfixturevalue("dynamodb_endpoint")
        )
        store = DynamoDBStore(table, client=request.getfixturevalue("local_client"))
        flags = ["--table", table]
    sessions = Sessions(store)
    for n, key in enumerate([ADA, ADA, ADA_2, BOB, EVE]):
        sessions.run(key, f"ev{n}", add, f"item {n}")
    return store, flags


def test_list_show_export(cli: tuple[Store, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    _, flags = cli
    assert admin.main([*flags, "list", ADA.pk]) == 0
    out = capsys.readouterr().out
    assert sorted(line.split("\t")[0] for line in out.splitlines()) == ["C0002", "D0001"]
    assert admin.main([*flags, "show", ADA.pk, "D0001"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == {"items": ["item 0", "item 1"]} and shown["version"] == 2
    assert admin.main([*flags, "export", EVE.pk]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["user"] == EVE.pk and len(exported["conversations"]) == 1
    assert len(exported["events"]) == 1


def test_delete_leaves_exactly_the_other_users(
    cli: tuple[Store, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    store, flags = cli
    before_bob = store.user_items(BOB.user_key)
    before_eve = store.user_items(EVE.user_key)
    # Without --yes it asks, and a wrong answer deletes nothing.
    assert admin.main([*flags, "delete", ADA.pk, "--settle", "0"], stdin=io.StringIO("no\n")) == 1
    assert len(store.user_items(ADA.user_key)) == 5
    assert (
        admin.main([*flags, "delete", ADA.pk, "--settle", "0"], stdin=io.StringIO(ADA.pk + "\n"))
        == 0
    )
    assert "deleted 5 items" in capsys.readouterr().out
    assert [sk for sk, _ in store.user_items(ADA.user_key)] == ["#tombstone"]
    assert store.user_items(BOB.user_key) == before_bob
    assert store.user_items(EVE.user_key) == before_eve
    assert admin.main([*flags, "delete", "--yes", "--settle", "0", BOB.pk]) == 0
    assert store.user_items(EVE.user_key) == before_eve


@pytest.mark.parametrize(
    "argv",
    [["list", "slack#t1#u1"], ["list", "nope"], ["show", "slack#T1#U1", "#x"], ["frobnicate"], []],
)
def test_malformed_input_is_one_line(
    cli: tuple[Store, list[str]], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    _, flags = cli
    with pytest.raises(SystemExit) if argv in (["frobnicate"], []) else _no_exit():
        code = admin.main([*flags, *argv])
        assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


class _no_exit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_create_table_on_dynamodb_local(
    dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    assert admin.main(["--table", "created-by-cli", "create-table"]) == 0
    assert admin.main(["--table", "created-by-cli", "create-table"]) == 0  # idempotent
    from sessions.dynamodb import make_client

    client = make_client()
    table = client.describe_table(TableName="created-by-cli")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    ttl = client.describe_time_to_live(TableName="created-by-cli")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"
    assert "is ready" in capsys.readouterr().out


def test_dead_letters_are_listed_and_replayed(
    cli: tuple[Store, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poison message, dead-lettered by the real Messenger edge, then replayed from the CLI
    by the bot the environment names (here the todo bot, which handles it)."""
    from handlers.messenger import build
    from handlers.settings import from_env
    from tests import messenger_requests as mr
    from tests.fakes import fake_slack
    from tests.reliability.test_poison_and_bad_input import PoisonBot

    store, flags = cli
    NEW = ConversationKey.messenger(page="100", psid="300")
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        edge = build(from_env(), sessions=Sessions(store), bot=PoisonBot())
        raw = json.dumps(mr.single(mr.text("add poison", psid="300"), page="100")).encode()
        assert edge.handle(mr.post(raw))["statusCode"] == 200
        assert admin.main([*flags, "dead-letters", NEW.pk]) == 0
        listed = capsys.readouterr().out
        assert listed.count("\n") == 1 and listed.count("\t") == 3, repr(listed)
        sk, _, replayable, error = listed.strip().split("\t")
        assert replayable == "replayable" and error.startswith("TurnError: turn failed")

        assert admin.main([*flags, "retry", NEW.pk, sk]) == 0
        assert f"replayed {sk}" in capsys.readouterr().out
        conversation = Sessions(store).get(stored(NEW))
        assert conversation is not None
        assert [i["text"] for i in conversation.state["items"]][-1] == "poison"
        assert fake.sends()[-1].body["message"]["text"].startswith("Added “poison”")
        assert admin.main([*flags, "dead-letters", NEW.pk]) == 0
        assert "no dead letters" in capsys.readouterr().out
        assert admin.main([*flags, "retry", NEW.pk, sk]) == 1


def test_dead_letters_lists_every_one_marking_what_it_cannot_open(
    cli: tuple[Store, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """One dead letter sealed with a key this process does not have must not hide the
    others: each is listed, that one marked."""
    import os

    from sessions.encryption import Envelope, LocalKeyring

    store, flags = cli

    def boom(state: dict[str, Any], text: str) -> Any:
        raise ValueError("bug")

    clear = Sessions(store)
    sealed = Sessions(store, encryption=Envelope(LocalKeyring(os.urandom(32))))
    for sessions, event in ((clear, "dl-clear"), (sealed, "dl-sealed"), (clear, "dl-later")):
        with pytest.raises(TurnError):
            sessions.run(ADA, event, boom, "x", dead_letter={"replay": event})
    assert admin.main([*flags, "dead-letters", ADA.pk]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    marks = sorted(line.split("\t")[2] for line in lines)
    assert marks == ["cannot open its payload (DecryptError)", "replayable", "replayable"]


def test_erase_a_workspace(cli: tuple[Store, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    store, flags = cli
    monkeypatch.setenv("SESSIONS_DELETE_SETTLE", "0")
    before_eve = store.user_items(EVE.user_key)
    refused = admin.main([*flags, "erase-workspace", "slack#T0001"], stdin=io.StringIO("no\n"))
    assert refused == 1 and Sessions(store).get(ADA) is not None
    assert admin.main([*flags, "erase-workspace", "--yes", "slack#T0001"]) == 0
    for key in (ADA, ADA_2, BOB):
        assert [sk for sk, _ in store.user_items(key.user_key)] == ["#tombstone"]
    assert store.user_items(EVE.user_key) == before_eve  # another platform's workspace
    assert admin.main([*flags, "erase-workspace", "--yes", "slack#t-1"]) == 2  # not an id
