"""The real local server as a subprocess (SQLite in a temp dir), driven by the chat
simulator's client on both platforms, restarted, and found intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from handlers.chat import ChatClient
from handlers.local import read_config
from sessions import ConversationKey, Sessions
from sessions.sqlite import SQLiteStore
from tests.dynamodb_local import free_port


def _env() -> dict[str, str]:
    drop = ("SLACK_", "MESSENGER_", "SESSIONS_", "PORT", "AWS_LAMBDA", "LOCAL_CONFIG")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


class Server:
    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "handlers.local", "--port", str(self.port)],
            cwd=self.workdir,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).json()["ok"]:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("the local server did not come up")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = self.proc.wait(timeout=20)
        self.proc = None
        return code

    def client(self, platform: str) -> ChatClient:
        secrets = read_config(self.workdir / ".data" / "local.env")
        return ChatClient(self.url, platform=platform, secrets=secrets)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, free_port())
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.proc.kill()
        srv.proc.wait()


def test_conversations_on_both_platforms_survive_a_restart(server: Server) -> None:
    config = read_config(server.workdir / ".data" / "local.env")
    assert config["SLACK_SIGNING_SECRET"] and config["MESSENGER_APP_SECRET"]

    dm = server.client("slack-dm")
    assert dm.send("add") == ["What should I add?"]
    assert dm.send("buy milk")[0].startswith("Added “buy milk”")
    slash = server.client("slack-command")
    assert slash.send("add call mum")[0].startswith("Added “call mum”")
    fb = server.client("messenger")
    assert fb.send("add")[0] == "What should I add?"
    assert fb.send("water plants")[0].startswith("Added “water plants”")

    assert server.stop() == 0  # Ctrl-C stops it cleanly
    server.start()
    assert read_config(server.workdir / ".data" / "local.env") == config  # created once

    assert "1. buy milk" in server.client("slack-dm").send("list")[0]
    assert "1. call mum" in server.client("slack-command").send("list")[0]
    listing = server.client("messenger").send("list")[0]
    assert "1. water plants" in listing and "[Done 1]" in listing

    store = SQLiteStore(server.workdir / ".data" / "sessions.sqlite3")
    key = ConversationKey.slack(team="T0LOCAL", channel="D0LOCAL", user="U0LOCAL")
    conversation = Sessions(store).get(key)
    assert conversation is not None and conversation.state["items"][0]["text"] == "buy milk"
    store.close()


def test_unsigned_requests_are_refused(server: Server) -> None:
    answer = requests.post(f"{server.url}/slack/events", data=b"command=%2Ftodo", timeout=5)
    assert answer.status_code == 401
    assert requests.get(f"{server.url}/nope", timeout=5).status_code == 404


def test_a_busy_port_is_one_clear_line(server: Server) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "handlers.local", "--port", str(server.port)],
        cwd=server.workdir,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: port {server.port} is already in use; try PORT={server.port + 1} make run"
    ]
    assert "Traceback" not in done.stdout + done.stderr
