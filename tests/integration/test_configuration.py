"""Honest configuration and health: inside Lambda a missing setting fails the cold start by
name; `/healthz` asks the store; the admin CLI never creates the database it was asked to read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.tools import admin
from handlers.tools.local import LocalApp
from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore, make_client
from sessions.errors import StoreConfigError, StoreError
from sessions.sqlite import SQLiteStore
from tests.fakes import fake_slack

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_ENV = {
    "SLACK_SIGNING_SECRET": "s",
    "SLACK_BOT_TOKEN": "xoxb-1",
    "MESSENGER_APP_SECRET": "a",
    "MESSENGER_VERIFY_TOKEN": "v",
    "MESSENGER_PAGE_TOKEN": "p",
    "SESSIONS_TABLE": "sessions",
}


def _cold_start(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import a Lambda entry module in a fresh interpreter, as Lambda's cold start does."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "MESSENGER_", "SESSIONS_", "BOT"))
    }
    return subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        env={**keep, "AWS_LAMBDA_FUNCTION_NAME": "test-fn", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "missing"),
    [
        ("handlers.slack", "SESSIONS_TABLE"),
        ("handlers.slack", "SLACK_BOT_TOKEN"),
        ("handlers.slack", "SLACK_SIGNING_SECRET"),
        ("handlers.messenger", "SESSIONS_TABLE"),
        ("handlers.messenger", "MESSENGER_PAGE_TOKEN"),
        ("handlers.messenger", "MESSENGER_APP_SECRET"),
    ],
)
def test_a_lambda_cold_start_fails_naming_the_missing_variable(module: str, missing: str) -> None:
    env = {k: v for k, v in LAMBDA_ENV.items() if k != missing}
    proc = _cold_start(module, env)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("handlers.settings.ConfigError") and missing in last, last


def test_a_lambda_cold_start_with_everything_set_builds(dynamodb_endpoint: str) -> None:
    # The other platform's secrets are not needed: each function checks its own.
    env = {k: v for k, v in LAMBDA_ENV.items() if not k.startswith("MESSENGER_")}
    proc = _cold_start("handlers.slack", {**env, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint})
    assert proc.returncode == 0, proc.stderr
    env = {k: v for k, v in LAMBDA_ENV.items() if not k.startswith("SLACK_")}
    assert _cold_start("handlers.messenger", env).returncode == 0


def test_store_health(dynamodb_endpoint: str, local_table: str, tmp_path: Path) -> None:
    client = make_client(endpoint_url=dynamodb_endpoint)
    DynamoDBStore(local_table, client=client).health()
    with pytest.raises(StoreConfigError, match="no-such-table"):
        DynamoDBStore("no-such-table", client=client).health()
    SQLiteStore(tmp_path / "s.sqlite3").health()
    broken = tmp_path / "broken.sqlite3"
    store = SQLiteStore(broken)
    store.health()
    store.close()
    for leftover in tmp_path.glob("broken.sqlite3-*"):
        leftover.unlink()
    broken.write_bytes(b"not a database, but long enough to be read as one" * 100)
    with pytest.raises(StoreError):
        SQLiteStore(broken).health()


@pytest.mark.parametrize("table_exists", [True, False])
def test_healthz_checks_that_the_table_exists(
    table_exists: bool,
    dynamodb_endpoint: str,
    local_table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        # The local server builds every edge (WhatsApp's too): its secrets as make run's.
        from tests.whatsapp_requests import APP_SECRET, VERIFY_TOKEN

        monkeypatch.setenv("WHATSAPP_APP_SECRET", APP_SECRET)
        monkeypatch.setenv("WHATSAPP_VERIFY_TOKEN", VERIFY_TOKEN)
        monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
        monkeypatch.setenv("SESSIONS_TABLE", local_table if table_exists else "no-such-table")
        local = {"host": "127.0.0.1:0"}  # the local server answers only to a loopback Host
        status, _, body = LocalApp(port=0).dispatch("GET", "/healthz", local, b"")
    health = json.loads(body)
    assert health["store"] == "dynamodb"
    if table_exists:
        assert (status, health["ok"]) == (200, True)
    else:
        assert (status, health["ok"]) == (503, False)
        assert "no-such-table" in health["error"]


def test_admin_refuses_a_database_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SESSIONS_TABLE", raising=False)
    missing = tmp_path / "typo.sqlite3"
    assert admin.main(["--db", str(missing), "list", "slack#T1#U1"]) == 2
    err = capsys.readouterr().err
    assert "typo.sqlite3" in err and "does not exist" in err
    assert not missing.exists()


def test_admin_shows_times_as_dates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.sqlite3"
    key = ConversationKey.slack(team="T1", channel="D1", user="U1")
    sessions = Sessions(SQLiteStore(path), clock=lambda: 1_800_000_000.0)
    sessions.run(key, "ev1", lambda s, _: ({"n": 1}, [], None), None)
    assert admin.main(["--db", str(path), "list", key.pk]) == 0
    out = capsys.readouterr().out
    # 1_800_000_000 is 2027-01-15 08:00:00 UTC; idle expiry is later the same way.
    assert "updated 2027-01-15 08:00:00 UTC" in out and "expires 20" in out
