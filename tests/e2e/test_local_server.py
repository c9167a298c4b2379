"""The real local server as a subprocess (SQLite in a temp dir), driven by the chat
simulator's client on both platforms, restarted, and found intact."""

from __future__ import annotations

import html
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from handlers.tools.chat import ChatClient, timer_lines
from handlers.tools.local import read_config
from sessions import ConversationKey, Sessions
from sessions.sqlite import SQLiteStore
from tests.dynamodb_local import free_port
from tests.keys import stored


def _env() -> dict[str, str]:
    drop = ("SLACK_", "MESSENGER_", "SESSIONS_", "PORT", "AWS_LAMBDA", "LOCAL_CONFIG")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


class Server:
    def __init__(
        self, workdir: Path, port: int, bot: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.bot = bot
        self.env = env or {}
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "handlers.tools.local", "--port", str(self.port)],
            cwd=self.workdir,
            env={
                **_env(),
                **({"BOT": self.bot} if self.bot else {}),
                **self.env,
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            },
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
            except (requests.ConnectionError, requests.Timeout):
                # Timeout: the socket listens (the kernel queues the request) while the
                # bot and the store are still being built.
                time.sleep(0.1)
        self.proc.kill()  # a fixture whose start fails never reaches its teardown
        self.proc.wait()
        raise AssertionError("the local server did not come up")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = self.proc.wait(timeout=20)
        self.proc = None
        return code

    def client(self, platform: str, **who: str) -> ChatClient:
        secrets = read_config(self.workdir / ".data" / "local.env")
        return ChatClient(self.url, platform=platform, secrets=secrets, **who)


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
    key = stored(ConversationKey.slack(team="T0LOCAL", channel="D0LOCAL", user="U0LOCAL"))
    conversation = Sessions(store).get(key)
    assert conversation is not None and conversation.state["items"][0]["text"] == "buy milk"
    store.close()


def test_the_server_notes_its_port_for_the_admin_cli_and_clears_it(server: Server) -> None:
    from handlers.tools.local import running_port

    config = server.workdir / ".data" / "local.env"
    assert running_port(config) == server.port  # `make admin ARGS="retry ..."` replies here
    assert server.proc is not None and server.proc.stdout is not None
    banner = [server.proc.stdout.readline() for _ in range(3)]
    assert f"http://127.0.0.1:{server.port}" in banner[0]
    assert banner[2].strip().endswith(f"make chat PORT={server.port}")  # not 3000's chat
    assert server.stop() == 0
    assert running_port(config) is None


def test_make_chat_state_asks_the_server_whatever_its_own_environment_says(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # This process points at another store: /state must still show the server's.
    monkeypatch.setenv("SESSIONS_DB", str(tmp_path / "elsewhere" / "other.sqlite3"))
    slack = server.client("slack-dm")
    assert slack.state() is None
    slack.send("add milk")
    shown = slack.state()
    assert shown["version"] == 1 and [i["text"] for i in shown["state"]["items"]] == ["milk"]
    assert shown["key"].endswith("/ todo:D0LOCAL")  # the todo bot's namespace
    assert not (tmp_path / "elsewhere").exists()


def test_unsigned_requests_are_refused(server: Server) -> None:
    answer = requests.post(f"{server.url}/slack/events", data=b"command=%2Ftodo", timeout=5)
    assert answer.status_code == 401
    assert requests.get(f"{server.url}/nope", timeout=5).status_code == 404


def test_a_busy_port_is_one_clear_line(server: Server) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "handlers.tools.local", "--port", str(server.port)],
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


@pytest.fixture
def example_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, free_port(), bot=request.param)
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.proc.kill()
        srv.proc.wait()


@pytest.mark.parametrize("example_server", ["examples.quiz:bot"], indirect=True)
def test_make_chat_presses_buttons_and_quick_replies(example_server: Server) -> None:
    slack = example_server.client("slack-dm")
    assert slack.commands == ["/quiz"]
    first = slack.send("/quiz")  # a declared command is sent as a slash command
    assert "A quiz of 4 questions." in first[0] and "#2 [2x]" in first[0]
    assert slack.press(2)[0].startswith("Right!")  # a signed block_actions payload
    assert slack.press(9) == ["(no button #9: the last replies had 3)"]
    fb = example_server.client("messenger")
    asked = fb.send("quiz")
    assert asked[1].startswith("Q1.") and "#3 [4x]" in asked[1]  # a button template
    assert fb.press(1)[0] == "No: it is 2x."  # a postback


@pytest.mark.parametrize("example_server", ["examples.intake:bot"], indirect=True)
def test_make_chat_fills_a_slack_modal_and_sees_the_follow_up(example_server: Server) -> None:
    slack = example_server.client("slack-dm")
    assert slack.send("/ticket") == ["(a form opened: New ticket)"]
    assert [f["name"] for f in slack.form_fields()] == ["title", "details", "urgency"]
    # A form the bot refuses (FormErrors) stays open with the bot's messages, at once.
    refused = slack.submit({"title": "", "details": "", "urgency": "high"})
    assert refused == ["(the form was refused: title: A ticket needs a title.)"]
    assert [f["name"] for f in slack.form_fields()] == ["title", "details", "urgency"]
    said = slack.submit({"title": "Printer on fire", "details": "", "urgency": "high"})
    # The effect runs after the commit (deferred) and its follow-up answers.
    said += [] if len(said) > 1 else slack.more()
    assert said == [
        "Filing “Printer on fire” (high)…",
        "Filed T-1: “Printer on fire”. We'll be in touch.",
    ]
    fb = example_server.client("messenger")
    fb.send("ticket")
    fb.send("Disk full")
    assert fb.send("Since 9am") == ["How urgent is it?\n  #1 [Low]  #2 [Normal]  #3 [High]"]
    said = fb.press(2)  # a quick reply
    said += [] if len(said) > 1 else fb.more()
    assert said[-1] == "Filed T-2: “Disk full”. We'll be in touch."


@pytest.mark.parametrize("example_server", ["examples.poll:bot"], indirect=True)
def test_make_chat_as_two_users_of_one_channel(example_server: Server) -> None:
    """``make chat --user --channel``: two people in one channel vote on one poll; each sees
    what Slack would show them (the tally, posted for the channel) and only their own
    confirmation."""
    alice = example_server.client("slack-dm", user="U0ALICE", channel="C0LUNCH")
    bob = example_server.client("slack-dm", user="U0BOB", channel="C0LUNCH")
    poll = alice.send("/poll Lunch? pizza, sushi")
    assert "Lunch?" in poll[0] and "#2 [sushi]" in poll[0]
    bob.buttons = list(alice.buttons)  # the poll is in the channel: Bob sees it too
    voted = bob.press(2)
    assert any("sushi: 1 vote" in line for line in voted)
    assert "You voted sushi." in voted
    seen_by_alice = alice.more(1.0)
    assert any("sushi: 1 vote" in line for line in seen_by_alice)  # the channel's tally
    assert "You voted sushi." not in seen_by_alice  # Bob's alone
    shared = alice.state()["scopes"]["channel"]
    assert shared["state"]["polls"]["1"]["votes"] == {"U0BOB": 1}
    assert shared["key"].endswith("poll:~channel")


def test_make_run_serves_the_install_flow_against_the_fake_slack(tmp_path: Path) -> None:
    """``SLACK_CLIENT_ID=... make run``: the install page, the fake authorize page, the
    redirect and the code exchange all on this machine; the installed workspace's chat is
    answered with its own token, another workspace's is not answered."""
    server = Server(tmp_path, free_port(), env={"SLACK_CLIENT_ID": "local.client"})
    server.start()
    try:
        browser = requests.Session()  # keeps the install's state cookie, as a browser does
        page = browser.get(f"{server.url}/slack/install", timeout=5)
        assert page.status_code == 200
        link = re.search(r'href="([^"]+)"', page.text)
        assert link is not None
        done = browser.get(html.unescape(link.group(1)), timeout=5)  # follows the redirects
        assert done.status_code == 200 and "installed in Local T0LOCAL" in done.text
        chat = server.client("slack-dm")
        assert chat.send("add milk")[0].startswith("Added “milk”")
        config = read_config(server.workdir / ".data" / "local.env")
        stranger = ChatClient(
            server.url, platform="slack-dm", team="T0OTHER", timeout=1.0, secrets=config
        )
        [said] = stranger.send("add milk")  # acked and dropped: the chat line says so
        assert said.startswith("(no reply: the server ") and "dropped" in said
    finally:
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait()


def test_a_timer_set_before_a_restart_fires_once_after_it(server: Server) -> None:
    """A reminder due while the server is down: kept in the SQLite file, fired when the
    server is back, its turn run once and its reply sent once."""
    dm = server.client("slack-dm")
    assert dm.send("add stretch")[0].startswith("Added")
    assert dm.send("remind me about 1 in 4 seconds") == [
        "OK, I'll remind you about “stretch” in 4 seconds."
    ]
    assert "remind-1: in 0m 0" in timer_lines(dm.state(), time.time())[0]
    key = stored(ConversationKey.slack(team="T0LOCAL", channel="D0LOCAL", user="U0LOCAL"))
    store = SQLiteStore(server.workdir / ".data" / "sessions.sqlite3")
    version = Sessions(store).get(key).version  # type: ignore[union-attr]
    assert server.stop() == 0  # before it is due
    time.sleep(5)  # due while nobody is serving
    server.start()
    fresh = server.client("slack-dm")
    fresh.cursor = 0  # everything the new server's fake Slack got (it fired at start)
    assert fresh.more(timeout=10) == ["⏰ Reminder: “stretch”\n  #1 [Done]"]
    assert fresh.more(timeout=3) == []  # once
    assert timer_lines(fresh.state(), time.time()) == ["no timers pending"]
    assert Sessions(store).get(key).version == version + 1  # type: ignore[union-attr]
    store.close()


@pytest.mark.parametrize("example_server", ["examples.assistant:bot"], indirect=True)
def test_make_run_streams_the_assistants_answer_from_its_fake_model(
    example_server: Server,
) -> None:
    """``BOT=examples.assistant:bot make run``: the answer comes from the fake model the
    server serves itself, streamed into the fake Slack, whose outbox shows it growing."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"<!-- test: assistant -->\n```console\n(.*?)```", readme, re.S)
    assert block and block.group(1).startswith(f"BOT={example_server.bot} make run")
    said = example_server.client("slack-dm").send("What is a thread?")
    # make chat waits for the stream to stop and shows it once, whole.
    assert len(said) == 1 and said[0].startswith('You said: "What is a thread?". I am a fake')
    deadline = time.monotonic() + 60
    shown: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        outbox = requests.get(f"{example_server.url}/_fake/outbox", timeout=5).json()
        shown = [m for m in outbox["messages"] if (m.get("raw") or {}).get("stream")]
        if shown and not shown[-1]["raw"]["streaming"]:
            break
        time.sleep(0.1)
    texts = [m["raw"]["text"] for m in shown]
    assert len({m["raw"]["stream"] for m in shown}) == 1  # one message
    assert len(texts) > 3 and all(b.startswith(a) for a, b in itertools.pairwise(texts))
    assert texts[-1].startswith('You said: "What is a thread?". I am a fake model')
    assert not shown[-1]["raw"]["streaming"]
