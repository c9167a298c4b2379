"""The docs' "local server on DynamoDB Local" (docs/local.md) runs as written: `make dynamodb`
on a port, the block's exports, `make admin ARGS=create-table` and `make run`, then a
conversation that lands in the table and a health check that says which store it asked."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from handlers.tools.chat import ChatClient
from handlers.tools.local import read_config
from sessions.dynamodb import make_client
from tests.dynamodb_local import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "docs" / "local.md"


def _block() -> list[str]:
    found = re.search(
        r"<!-- test: dynamodb-local -->\n```console\n(.*?)```", README.read_text(), re.S
    )
    assert found, "README has no block marked dynamodb-local"
    return found.group(1).strip().splitlines()


def _clean_env() -> dict[str, str]:
    drop = (
        "SLACK_",
        "MESSENGER_",
        "WHATSAPP_",
        "ASSISTANT_",
        "SESSIONS_",
        "PORT",
        "AWS_",
        "LOCAL_CONFIG",
        "MAKEFLAGS",
    )
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _exports(lines: list[str], port: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in lines:
        if line.startswith("export "):
            for word in shlex.split(line)[1:]:
                name, _, value = word.partition("=")
                env[name] = value.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    return env


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, to make and what it runs
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def dynamodb(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "dynamodb",
            f"DYNAMODB_PORT={port}",
            f"DYNAMODB_DATA={tmp_path / 'dynamodb'}",
        ],
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the first line is printed once it answers
    assert f"on http://127.0.0.1:{port}" in line, line + proc.stdout.read()
    yield port
    _stop(proc)


def test_the_readme_commands_run_the_local_server_on_dynamodb_local(
    dynamodb: int, tmp_path: Path
) -> None:
    lines = _block()
    assert lines[-2:] == ["make admin ARGS=create-table", "make run"]
    env = {**_clean_env(), **_exports(lines, dynamodb)}
    created = subprocess.run(
        shlex.split(lines[-2]),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert "table sessions is ready" in created.stdout

    port = free_port()
    config = tmp_path / "local.env"
    server = subprocess.Popen(
        shlex.split(lines[-1]),
        cwd=ROOT,
        env={**env, "PORT": str(port), "LOCAL_CONFIG": str(config)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health is None:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                health = requests.get(f"{url}/healthz", timeout=2).json()
            except requests.ConnectionError:
                time.sleep(0.2)
        assert health is not None and health["ok"] is True and health["store"] == "dynamodb"

        dm = ChatClient(url, platform="slack-dm", secrets=read_config(config))
        assert dm.send("add") == ["What should I add?"]
        assert dm.send("buy milk")[0].startswith("Added “buy milk”")
    finally:
        _stop(server)

    client = make_client(endpoint_url=env["AWS_ENDPOINT_URL_DYNAMODB"], region_name="us-east-1")
    items = client.scan(TableName="sessions")["Items"]
    assert any(item["pk"]["S"] == "slack#T0LOCAL#U0LOCAL" for item in items)
