"""Why a delivery came to nothing, where the developer looks: a request the edge dropped or
refused before any turn (a workspace with no installation, a bad signature) in the
inspector's deliveries pane and on ``GET /_inspector/deliveries`` (what ``make chat`` reads),
not only in the server's log; a turn that failed printed with the bot's traceback in the
``make run`` terminal; the dead-letter pane listing whose turn failed, every user's of the
channel, not the form's identity. (The deploy's logs keep only the error's class:
``tests/functional/test_telemetry.py``.)"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from handlers.tools.chat import ChatClient
from handlers.tools.local import read_config
from tests import messenger_requests as mr
from tests.browser import Page, binary, chromium
from tests.dynamodb_local import free_port
from tests.e2e.test_local_guard import output, page_secret
from tests.e2e.test_local_server import Server
from tests.slack_requests import dm_body, sign


@pytest.fixture
def page() -> Iterator[Page]:
    if binary() is None:
        pytest.fail("Chromium is missing: make test installs it (scripts/ensure-chromium.sh)")
    with chromium() as browser:
        yield browser


def deliveries(server: Server, **who: str) -> dict[str, Any]:
    answer = requests.get(f"{server.url}/_inspector/deliveries", params=who, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def shown(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["outcome"], e.get("reason"), e.get("status"), e["user"]) for e in entries]


def test_a_dropped_or_refused_delivery_says_why(tmp_path: Path, page: Page) -> None:
    server = Server(tmp_path, free_port(), env={"SLACK_CLIENT_ID": "local.client"})
    server.start()
    try:
        config = read_config(server.workdir / ".data" / "local.env")
        other = {"platform": "slack", "team": "T0OTHER", "channel": "D0LOCAL"}
        seq = deliveries(server, **other)["seq"]

        # A workspace that never installed the app: acked (Slack would retry a 5xx), dropped.
        stranger = ChatClient(server.url, platform="slack-dm", team="T0OTHER", timeout=0.2,
                              secrets=config)  # fmt: skip
        stranger.send("add milk")
        dropped = deliveries(server, **other, user="U0LOCAL", after=str(seq))
        assert shown(dropped["deliveries"]) == [
            ("dropped", "event from a workspace with no installation; dropped", 200, "U0LOCAL")
        ]
        assert dropped["deliveries"][0]["message"]["text"] == "add milk"

        # A bad signature (the wrong secret, a stale config): refused, 401.
        body = json.dumps(dm_body("list", team="T0OTHER", channel="D0LOCAL", user="U0BAD"))
        bad = {"content-type": "application/json", **sign(body.encode(), secret="not-it")}
        answer = requests.post(f"{server.url}/slack/events", data=body, headers=bad, timeout=10)
        assert answer.status_code == 401
        refused = deliveries(server, **other, after=str(dropped["seq"]))["deliveries"]
        assert shown(refused) == [
            ("refused", "rejected Slack request: bad, stale or missing signature", 401, "U0BAD")
        ]
        raw = json.dumps(mr.single(mr.text("hi", psid="5550001"))).encode()
        fb = requests.post(
            f"{server.url}/messenger/webhook", data=raw, timeout=10,
            headers={"content-type": "application/json", "x-hub-signature-256": "sha256=00"},
        )  # fmt: skip
        assert fb.status_code == 403
        page_id = mr.PAGE
        [messenger] = deliveries(server, platform="messenger", team=page_id, user="5550001")[
            "deliveries"
        ]
        assert (messenger["outcome"], messenger["reason"]) == (
            "refused",
            "webhook POST with a bad signature",
        )

        # Installed, the workspace's turns are deliveries like any other, never drops.
        browser = requests.Session()  # the install's state is bound to its browser's cookie
        install = browser.get(f"{server.url}/slack/install", timeout=5)
        link = re.search(r'href="([^"]+)"', install.text)
        assert link is not None
        assert browser.get(html.unescape(link.group(1)), timeout=5).status_code == 200
        assert server.client("slack-dm").send("add tea")[0].startswith("Added “tea”")
        local = deliveries(server, platform="slack", team="T0LOCAL", channel="D0LOCAL")
        assert [(e["outcome"], e.get("reason")) for e in local["deliveries"]] == [("applied", None)]

        # The inspector's deliveries pane shows the reason beside the request.
        page.goto(server.url + "/")
        page.type("#team", "T0OTHER")
        page.click("#switch")
        page.wait_for(
            "document.getElementById('journal').innerText.includes('no installation')",
            "the dropped delivery in the pane",
        )
        pane = page.text("#journal")
        assert "dropped" in pane and "add milk" in pane
        assert "refused" in pane and "bad, stale or missing signature" in pane
    finally:
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture
def fragile(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, free_port(), bot="tests.bots.fragile:bot")
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.proc.kill()
        srv.proc.wait()


def test_a_failed_turn_shows_its_traceback_and_whose_it_is(fragile: Server) -> None:
    secret = page_secret(fragile)
    headers = {"content-type": "application/json", "x-inspector-secret": secret}
    for user in ("U0ANN", "U0BOB"):
        answer = requests.post(
            f"{fragile.url}/_inspector/act", headers=headers, timeout=30,
            data=json.dumps({"platform": "slack", "team": "T0LOCAL", "channel": "C0TEAM",
                             "user": user, "kind": "text", "text": "/fragile boom"}),
        )  # fmt: skip
        assert answer.status_code == 200 and answer.json()["status"] == 200

    # The form's identity (U0LOCAL) has no dead letter of its own: the pane still lists the
    # channel's, each with the user whose turn failed.
    view = requests.get(
        f"{fragile.url}/_inspector/view", timeout=10,
        params={"platform": "slack", "team": "T0LOCAL", "channel": "C0TEAM", "user": "U0LOCAL"},
    ).json()  # fmt: skip
    letters = [(d["user"], d["channel"], d["said"]) for d in view["dead_letters"]]
    assert letters == [("U0ANN", "C0TEAM", "/fragile boom"), ("U0BOB", "C0TEAM", "/fragile boom")]
    assert all("ValueError" in d["error"] for d in view["dead_letters"])
    ann = deliveries(fragile, platform="slack", team="T0LOCAL", channel="C0TEAM", user="U0ANN")
    assert [(e["outcome"], e["reason"]) for e in ann["deliveries"]] == [
        ("dead letter", "ValueError: cannot handle 'boom'")
    ]

    # The make run terminal: the bot's traceback, its message and its line included.
    out = output(fragile)
    assert out.count("The bot's turn failed") == 2
    assert "slack T0LOCAL C0TEAM U0ANN, 'boom'" in out
    assert 'raise ValueError(f"cannot handle {message.text!r}")' in out
    assert re.search(r'File ".*tests/bots/fragile\.py", line \d+, in turn', out)
    assert "ValueError: cannot handle 'boom'" in out
    # The runner's own log line stays class-only, as in the deploy.
    assert "event recorded as a dead letter: TurnError < ValueError" in out
