"""``make replay`` replays a transcript against the bot it was recorded with (or refuses,
naming it), and a transcript saved after a restart of ``make run`` holds the turns from
before it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.dynamodb_local import free_port
from tests.e2e.test_local_server import Server

ROOT = Path(__file__).resolve().parents[2]
LUNCH = "tests/transcripts/lunch.json"


def make_replay(file: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("BOT", "MAKEFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", "replay", f"FILE={file}"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_make_replay_runs_the_bot_the_transcript_names() -> None:
    """A poll's transcript, no ``BOT``: replayed against the poll (not the default todo bot,
    against which every turn would differ)."""
    done = make_replay(LUNCH)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "6 turns replayed: the same replies and state as recorded (PollBot, BOT=examples.poll:bot)"
    ]


def test_another_bot_is_refused_by_name(tmp_path: Path) -> None:
    done = make_replay(LUNCH, BOT="examples.todo:bot")
    assert done.returncode == 2 and done.stdout == ""
    assert (
        f"error: {LUNCH} was recorded with PollBot (BOT=examples.poll:bot), but "
        "BOT=examples.todo:bot is TodoBot: replay it with BOT=examples.poll:bot (or no BOT)"
    ) in done.stderr
    # A transcript that names only the class (saved before sources were recorded).
    data = json.loads((ROOT / LUNCH).read_text())
    del data["source"]
    bare = tmp_path / "lunch.json"
    bare.write_text(json.dumps(data))
    done = make_replay(str(bare))
    assert done.returncode == 2
    assert "was recorded with PollBot, but BOT=examples.todo:bot is TodoBot" in done.stderr
    assert make_replay(str(bare), BOT="examples.poll:bot").returncode == 0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, free_port())
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.proc.kill()
        srv.proc.wait()


def test_a_transcript_saved_after_a_restart_holds_the_turns_before_it(
    server: Server, tmp_path: Path
) -> None:
    assert server.client("slack-dm").send("add milk")[0].startswith("Added “milk”")
    assert server.stop() == 0
    server.start()
    assert server.client("slack-dm").send("add eggs")[0].startswith("Added “eggs”")
    who = {"platform": "slack", "team": "T0LOCAL", "channel": "D0LOCAL", "user": "U0LOCAL"}
    saved = requests.get(f"{server.url}/_inspector/transcript", params=who, timeout=10).json()
    assert [t["message"]["text"] for t in saved["turns"]] == ["add milk", "add eggs"]
    assert saved["source"] == "examples.todo:bot"
    file = tmp_path / "saved.json"
    file.write_text(json.dumps(saved))
    done = make_replay(str(file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("2 turns replayed: the same replies and state")
