"""The web inspector of ``make run`` in a real (headless) Chromium: a DM, a slash command, a
button, a modal submitted, another user of the same channel, a dead letter retried, the state
read off the page, a transcript saved and replayed; Messenger's quick replies. Every action
goes through the page's own controls (real clicks and keys) and the server's signed edges.

``UPDATE_SCREENSHOT=1`` (``make screenshot``) also writes the README's picture,
``docs/inspector.png``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.browser import Page, binary, chromium
from tests.dynamodb_local import free_port
from tests.e2e.test_local_server import Server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    flag = tmp_path / "broken"
    flag.write_text("yes")
    return flag


@pytest.fixture
def server(tmp_path: Path, broken: Path) -> Iterator[Server]:
    srv = Server(tmp_path, free_port(), bot="tests.bots.inspected:bot",
                 env={"BROKEN_FLAG": str(broken)})  # fmt: skip
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.proc.kill()
        srv.proc.wait()


@pytest.fixture
def page() -> Iterator[Page]:
    if binary() is None:
        pytest.fail("Chromium is missing: make test installs it (scripts/ensure-chromium.sh)")
    with chromium() as browser:
        yield browser


def switch(page: Page, *, channel: str | None = None, user: str | None = None) -> None:
    if channel is not None:
        page.type("#channel", channel)
    if user is not None:
        page.type("#user", user)
    page.click("#switch")
    wanted = [f"channel={channel}"] * (channel is not None) + [f"user={user}"] * (user is not None)
    page.wait_for(
        f"(document.body.dataset.shown || '').split('&').filter(p => {json.dumps(wanted)}"
        ".includes(p)).length === " + str(len(wanted)),
        "the page shows the new identity",
    )


def say(page: Page, text: str) -> None:
    page.type("#say", text, enter=True)


def messages(page: Page) -> list[str]:
    found = page.eval("[...document.querySelectorAll('#messages .msg')].map(m => m.innerText)")
    return list(found)


def wait_message(page: Page, text: str) -> None:
    page.wait(lambda: any(text in m for m in messages(page)), f"a message with {text!r}")


def submit_modal(page: Page, values: dict[str, str]) -> None:
    page.wait_for("getComputedStyle(document.getElementById('modal-back')).display === 'flex'",
                  "the form opens")  # fmt: skip
    for name, value in values.items():
        page.type(f"#modal [name={name}]", value)
    page.click("#modal-submit")
    page.wait_for("getComputedStyle(document.getElementById('modal-back')).display === 'none'",
                  "the form closes")  # fmt: skip


def stored(page: Page, scope: str) -> object:
    text = page.text(f"#state [data-scope={scope}] pre")
    return json.loads(text) if text.strip() else None


def test_the_inspector_drives_a_slack_conversation(
    server: Server, page: Page, broken: Path, tmp_path: Path
) -> None:
    page.goto(server.url + "/")
    page.wait_for("document.getElementById('bot').innerText.includes('Inspected')", "the bot")

    # A DM (the default identity: U0LOCAL in D0LOCAL).
    say(page, "hello")
    wait_message(page, "Type `standup`".replace("`", ""))

    # A slash command in a channel: the round opens, its buttons drawn from the blocks.
    switch(page, channel="C0TEAM")
    say(page, "/standup")
    wait_message(page, "Standup #1: press Answer to give yours.")
    page.click("button.action[data-action='standup:answer']")
    submit_modal(page, {"yesterday": "wrote the inspector", "today": "ship it"})
    wait_message(page, "Thanks, your answer is in.")
    page.wait(lambda: stored(page, "channel"), "the channel's state")
    answers = stored(page, "channel")["round"]["answers"]  # type: ignore[index]
    assert answers["U0LOCAL"]["today"] == "ship it"
    assert stored(page, "conversation")["last"]["yesterday"] == "wrote the inspector"  # type: ignore[index]

    # Another user of the same channel: sees the round, answers too.
    switch(page, user="U0BOB")
    wait_message(page, "Standup #1: press Answer to give yours.")
    assert not any("Thanks, your answer is in." in m for m in messages(page))  # ephemeral
    page.click("button.action[data-action='standup:answer']")
    submit_modal(page, {"yesterday": "reviews", "today": "more reviews"})
    page.wait(
        lambda: len((stored(page, "channel") or {}).get("round", {}).get("answers", {})) == 2,  # type: ignore[union-attr]
        "both answers in the channel's state",
    )
    deliveries = page.text("#journal")
    assert "applied" in deliveries and "submission standup:submit" in deliveries

    # A transcript of the channel, saved, replays against the bot unchanged.
    transcript = requests.get(
        f"{server.url}/_inspector/transcript",
        params={"platform": "slack", "team": "T0LOCAL", "channel": "C0TEAM", "user": "U0BOB"},
        timeout=10,
    ).json()
    assert [t["user"] for t in transcript["turns"]] == ["U0LOCAL"] * 3 + ["U0BOB"] * 2
    saved = tmp_path / "standup.json"
    saved.write_text(json.dumps(transcript))
    page.send("DOM.enable")
    document = page.send("DOM.getDocument")["root"]["nodeId"]
    node = page.send("DOM.querySelector", nodeId=document, selector="#replay-file")["nodeId"]
    page.send("DOM.setFileInputFiles", nodeId=node, files=[str(saved)])
    page.wait_for("document.getElementById('replay').innerText.includes('5 turns replayed')",
                  "the replay's verdict")  # fmt: skip

    # A dead letter: the bot fails; the page lists it; fixed, Retry replays it.
    switch(page, channel="D0LOCAL", user="U0LOCAL")
    say(page, "boom")
    page.wait_for("document.querySelectorAll('#dead .dead-letter').length === 1", "the dead letter")
    assert "RuntimeError" in page.text("#dead")
    broken.unlink()
    page.click("#dead button.retry")
    page.wait_for("document.querySelectorAll('#dead .dead-letter').length === 0", "the retry")
    wait_message(page, "Fixed: boom handled.")
    assert "(replayed)" in page.text("#journal")

    # The README's picture: the channel with both answers, and a schedule pending.
    switch(page, channel="C0TEAM", user="U0LOCAL")
    wait_message(page, "Standup #1")
    say(page, "/standup daily 09:30 Europe/Berlin")
    wait_message(page, "A standup every weekday at 09:30 (Europe/Berlin).")
    page.wait_for("document.getElementById('timers').innerText.includes('standup:daily')",
                  "the pending timer")  # fmt: skip
    assert "every 30 9 * * MON-FRI (Europe/Berlin)" in page.text("#timers")
    shot = tmp_path / "inspector.png"
    page.screenshot(shot)
    assert shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "inspector.png")


def test_the_inspector_draws_messenger_quick_replies(tmp_path: Path, page: Page) -> None:
    server = Server(tmp_path, free_port())  # the todo bot
    server.start()
    try:
        page.goto(server.url + "/")
        page.eval("document.getElementById('platform').value = 'messenger'")
        page.eval("document.getElementById('platform').dispatchEvent(new Event('change'))")
        page.wait_for("document.getElementById('team-label').innerText === 'page'", "Messenger")
        say(page, "add water the plants")
        wait_message(page, "Added “water the plants”")
        say(page, "list")
        page.click("button.quick-reply[data-label='Done 1'], button.postback")
        wait_message(page, "Done: “water the plants”. 0 left.")
        page.wait(lambda: (stored(page, "conversation") or {}).get("items") == [], "the state")  # type: ignore[union-attr]
    finally:
        server.stop()


def test_the_inspector_has_a_whatsapp_pane(tmp_path: Path, page: Page) -> None:
    """The WhatsApp pane: a message through the signed webhook, the reply buttons the fake
    Cloud API kept, one pressed (a ``button_reply``), the state of
    ``whatsapp#<number>#<user>``."""
    server = Server(tmp_path, free_port())  # the todo bot
    server.start()
    try:
        page.goto(server.url + "/")
        page.eval("document.getElementById('platform').value = 'whatsapp'")
        page.eval("document.getElementById('platform').dispatchEvent(new Event('change'))")
        page.wait_for("document.getElementById('team-label').innerText === 'number'", "WhatsApp")
        say(page, "add water the plants")
        wait_message(page, "Added “water the plants”")
        say(page, "list")
        page.click("button.quick-reply[data-kind='button_reply'][data-label='Done 1']")
        wait_message(page, "Done: “water the plants”. 0 left.")
        page.wait(lambda: (stored(page, "conversation") or {}).get("items") == [], "the state")  # type: ignore[union-attr]
        state = server.client("whatsapp").state()  # the store the server uses
        assert state["key"].startswith("whatsapp#100000000000002#15550000001 / ")
    finally:
        server.stop()


def test_the_inspector_picks_from_a_block_kit_select(tmp_path: Path, page: Page) -> None:
    server = Server(tmp_path, free_port(), bot="tests.bots.picker:bot")
    server.start()
    try:
        page.goto(server.url + "/")
        say(page, "hi")
        page.wait_for("document.querySelector('select.pick') !== null", "the select")
        assert "Lunch today?" in " ".join(messages(page))
        page.eval(
            "(() => { const s = document.querySelector('select.pick'); s.value = 'sushi';"
            " s.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )
        wait_message(page, "You picked sushi.")
        page.wait(lambda: stored(page, "conversation") == {"lunch": "sushi"}, "the state")
    finally:
        server.stop()


def test_the_inspector_shows_an_assistant_thread_with_its_prompts(
    tmp_path: Path, page: Page
) -> None:
    """*New assistant thread* opens one (as Slack's assistant pane does): its replies are
    grouped under the thread with its title, status and prompts; a prompt sends its message
    in the thread."""
    server = Server(tmp_path, free_port(), bot="tests.bots.threaded:bot")
    server.start()
    try:
        page.goto(server.url + "/")
        page.click("#assistant")
        page.wait_for("document.querySelector('.msg.thread button.prompt') !== null", "prompts")
        (thread,) = [m for m in messages(page) if m.startswith("thread New chat")]
        assert "bot is getting ready…" in thread and "(you are in it)" in thread
        page.click("button.prompt")  # "Summarise"
        wait_message(page, "1 notes in this thread")
        say(page, "and more")
        wait_message(page, "2 notes in this thread")
        (thread,) = [m for m in messages(page) if m.startswith("thread New chat")]
        assert thread.index("summarise this thread") < thread.index("and more"), thread
        assert "bot is writing…" not in thread  # its reply cleared the status
    finally:
        server.stop()
