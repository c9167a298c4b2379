"""``make chat`` as its user runs it: the REPL through a pipe against the real local server
(a subprocess), the README's own session included; a reset connection and a dropped
delivery said as such."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.tools.chat import ChatClient, ChatError
from tests.dynamodb_local import free_port
from tests.e2e.test_local_server import Server, _env

ROOT = Path(__file__).resolve().parents[2]


def chat(server: Server, typed: str, *args: str) -> str:
    """``make chat ARGS=...`` with ``typed`` on its standard input; what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "handlers.tools.chat", "--url", server.url, *args],
        cwd=server.workdir,
        env={**_env(), "PYTHONPATH": str(ROOT)},
        input=typed,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture
def bot_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, free_port(), bot=getattr(request, "param", None))
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.proc.kill()
        srv.proc.wait()


def test_a_button_stays_pressable_until_newer_replies_replace_it(bot_server: Server) -> None:
    """The README's session: ``list`` shows ``#1 [Done]``, and ``#1`` presses it (before
    each prompt the chat looks for late replies; finding none must not clear the buttons)."""
    out = chat(bot_server, "add\nbuy milk\nlist\n#1\n#1\n")
    assert "bot> Your list:\n     1. buy milk  #1 [Done]\n" in out
    assert "bot> Done: “buy milk”. 0 left.\n" in out
    assert "no button #1" not in out


@pytest.mark.parametrize("bot_server", ["examples.standup:bot"], indirect=True)
def test_a_modal_a_button_opens_is_filled_and_every_scope_shown(bot_server: Server) -> None:
    """``/standup`` posts *Answer* / *Close*; ``#1`` opens the modal, asked field by field;
    ``/state`` then shows the channel's state and the user's, both scopes."""
    typed = "/standup\n#1\nshipped the chat\nthe docs test\nnone\n/state\n"
    out = chat(bot_server, typed, "--channel", "C0LOCAL")
    assert "bot> (a form opened: Standup)\nform> Standup\n" in out, out
    assert "bot> Thanks, your answer is in." in out
    shown = out.split("you> ")[-2].splitlines()  # what /state printed
    assert shown[0] == "channel:" and shown[3] == "conversation:", out
    assert shown[1].startswith("key: slack#T0LOCAL#C0LOCAL#channel / standup:~channel")
    assert '"today": "the docs test"' in shown[2]
    assert shown[4].startswith("key: slack#T0LOCAL#U0LOCAL / standup:C0LOCAL")
    assert '"last": {"yesterday": "shipped the chat"' in shown[5]


def _resetting_server() -> tuple[int, threading.Event]:
    """A listener that takes each connection and resets it (RST, no answer): what a server
    whose backlog overflowed does to a client."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], stop


def test_a_reset_is_reported_as_a_reset_and_a_refusal_as_no_server() -> None:
    port, stop = _resetting_server()
    try:
        with pytest.raises(ChatError, match="reset the connection") as reset:
            ChatClient(f"http://127.0.0.1:{port}", secrets={"SLACK_SIGNING_SECRET": "x"})
        assert "no server" not in str(reset.value)
    finally:
        stop.set()
    with pytest.raises(ChatError, match="no server at"):
        ChatClient(f"http://127.0.0.1:{free_port()}", secrets={"SLACK_SIGNING_SECRET": "x"})


def test_a_dropped_delivery_says_why_on_the_chat_line(tmp_path: Path) -> None:
    """A workspace with no installation: the server acks and drops the event; the chat line
    says the server ran no turn for it, instead of "(no reply seen ...)"."""
    server = Server(tmp_path, free_port(), env={"SLACK_CLIENT_ID": "local.client"})
    server.start()
    try:
        out = chat(server, "add milk\n", "--team", "T0OTHER")
        # The server's journal names the reason (GET /_inspector/deliveries) where it has it;
        # else the chat derives it: no turn ran for the event.
        said = [line for line in out.splitlines() if line.startswith("you> bot> ")]
        assert said[0].startswith("you> bot> (no reply: the server "), out
        assert "dropped" in said[0] and "no reply seen" not in out
    finally:
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait()


@pytest.mark.parametrize("bot_server", ["tests.bots.threaded:bot"], indirect=True)
def test_the_chat_opens_an_assistant_thread_taps_a_prompt_and_leaves_the_thread(
    bot_server: Server,
) -> None:
    """``/assistant`` opens an assistant thread (its status, title and prompts shown, the
    prompts numbered); a line is sent in the thread; ``#1`` sends the first prompt's message;
    ``/thread`` goes back to the top level, where the bot answers in a thread of its own."""
    out = chat(bot_server, "/assistant C0VIEW\nhello\n#1\n/thread\nhi top\n")
    assert "(in assistant thread " in out, out
    assert "bot> (status: is getting ready)\nbot> (title: New chat)\n" in out, out
    assert "bot> Try one\n       #1 [Summarise]  #2 [Ideas]\n" in out, out
    assert "bot> (status: is writing)\nbot> 1 notes in this thread\n" in out, out
    assert "bot> 2 notes in this thread\n" in out, out
    assert "(top level)" in out
    # A top-level DM is the root of its own thread: a fresh state, answered in that thread.
    top = out.split("(top level)")[1]
    assert "] 1 notes in this thread" in top and "bot> [thread " in top, out
    assert "(status:" not in top  # no thread to show a status in


def test_make_chat_on_whatsapp_adds_lists_and_presses_a_reply_button(bot_server: Server) -> None:
    """``make chat ARGS="--platform whatsapp"`` against ``make run``: the message goes to
    ``/whatsapp/webhook`` signed with the development config's app secret, the replies come
    back from the fake Cloud API, and ``#1`` presses a reply button."""
    out = chat(bot_server, "add\nbuy milk\nlist\n#1\n", "--platform", "whatsapp")
    assert "bot> Your list:\n     1. buy milk\n       #1 [Done 1]\n" in out, out
    assert "bot> Done: “buy milk”. 0 left.\n" in out, out
    state = bot_server.client("whatsapp").state()
    assert state["key"].startswith("whatsapp#100000000000002#15550000001 / "), state
