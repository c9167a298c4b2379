"""A page on another origin, in a real (headless) Chromium, tries what any site the developer
visits could try against ``make run`` (the issue's security report): a ``text/plain`` form
posted to ``/_inspector/act``, ``no-cors`` fetches to the inspector and to the fake Slack
API, a JSON fetch without the per-run secret, a cross-origin read. Each fails, and nothing
reaches the bot or the outbox; a DNS-rebinding read (a foreign ``Host``, which a browser
cannot forge for another site, so sent over raw HTTP) is refused; and the inspector still
works from its own page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.browser import Page, binary, chromium
from tests.dynamodb_local import free_port
from tests.e2e.test_inspector import say, wait_message
from tests.e2e.test_local_guard import output
from tests.e2e.test_local_server import Server

ATTACKER = """<!doctype html>
<html><body>
<h1>A page on another site</h1>
<iframe name="sink" id="sink"></iframe>
<form id="plain" method="POST" enctype="text/plain" target="sink">
  <input name='{"kind": "text", "text": "pwned by a form", "pad": "' value='"}'>
</form>
</body></html>
"""


class AttackerPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = ATTACKER.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        return None


@pytest.fixture
def attacker() -> Iterator[str]:
    """Another origin: the same machine, another port."""
    site = ThreadingHTTPServer(("127.0.0.1", free_port()), AttackerPage)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, free_port())  # the todo bot
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


def seen_by_the_bot(server: Server) -> list[str]:
    """What the bot was sent (every delivery's text) and what the fake APIs got."""
    view = requests.get(f"{server.url}/_inspector/view", timeout=10).json()
    outbox = requests.get(f"{server.url}/_fake/outbox", timeout=10).json()["messages"]
    said = [str(e["message"].get("text")) for e in view["journal"]]
    return said + [str(m.get("text")) for m in view["messages"] + outbox]


def test_a_page_on_another_origin_fails_at_each_attack(
    server: Server, attacker: str, page: Page
) -> None:
    target = server.url
    page.goto(attacker + "/")

    # 1. A text/plain form: its body parses as JSON, and a form needs no permission to post.
    page.eval(
        f"""new Promise((done) => {{
            const sink = document.getElementById("sink");
            sink.addEventListener("load", () => done(true), {{once: true}});
            const form = document.getElementById("plain");
            form.action = {json.dumps(target + "/_inspector/act")};
            form.submit();
        }})"""
    )
    # 2. no-cors fetches: sent without asking, the answer unreadable (but the harm done).
    opaque = page.eval(
        f"""(async () => {{
            const act = await fetch({json.dumps(target + "/_inspector/act")}, {{
                method: "POST", mode: "no-cors",
                body: JSON.stringify({{kind: "text", text: "pwned by no-cors"}})}});
            const retry = await fetch({json.dumps(target + "/_inspector/retry")}, {{
                method: "POST", mode: "no-cors",
                body: JSON.stringify({{pk: "slack#T0LOCAL#U0LOCAL", sk: "todo:D0LOCAL#evt#x"}})}});
            const fake = await fetch({json.dumps(target + "/_fake/slack/api/chat.postMessage")}, {{
                method: "POST", mode: "no-cors",
                headers: {{"content-type": "application/x-www-form-urlencoded"}},
                body: "channel=D0LOCAL&text=planted+by+no-cors"}});
            return [act.type, retry.type, fake.type];
        }})()"""
    )
    assert opaque == ["opaque"] * 3
    # 3. A JSON fetch (the inspector's own kind of request), without the secret: the
    #    browser asks first (a preflight), and the server never allows another origin.
    refused = page.eval(
        f"""fetch({json.dumps(target + "/_inspector/act")}, {{
                method: "POST", headers: {{"content-type": "application/json"}},
                body: JSON.stringify({{kind: "text", text: "pwned by JSON"}})}})
            .then((r) => "answered " + r.status, (e) => "failed: " + e.name)"""
    )
    assert refused == "failed: TypeError"
    # 4. A cross-origin read of users' messages: the browser withholds the answer.
    read = page.eval(
        f"""fetch({json.dumps(target + "/_inspector/view")}).then((r) => r.json())
            .then((v) => "read " + JSON.stringify(v).length, (e) => "failed: " + e.name)"""
    )
    assert read == "failed: TypeError"

    assert not [s for s in seen_by_the_bot(server) if "pwned" in s or "planted" in s]

    # 5. DNS rebinding: the attacker's name re-pointed at 127.0.0.1 is the Host.
    for path in ("/_inspector/view", "/_fake/outbox", "/"):
        rebound = requests.get(
            f"{target}{path}", headers={"Host": f"attacker.example:{server.port}"}, timeout=10
        )
        assert rebound.status_code == 400, path

    # The inspector, from its own page, still works.
    page.goto(target + "/")
    say(page, "add milk")
    wait_message(page, "Added “milk”")
    assert [s for s in seen_by_the_bot(server) if s == "add milk"]

    refusals = [line.split(": ", 1)[1] for line in output(server).splitlines() if "refused" in line]
    origin = f"cross-origin request refused (Origin '{attacker}') (403)"
    assert refusals == [
        f"refused POST /_inspector/act: {origin}",  # the form
        f"refused POST /_inspector/act: {origin}",  # no-cors
        f"refused POST /_inspector/retry: {origin}",
        f"refused POST /_fake/slack/api/chat.postMessage: {origin}",
        f"refused OPTIONS /_inspector/act: {origin}",  # the JSON fetch's preflight
        *[f"refused GET {path}: this server answers only to 127.0.0.1, localhost or [::1] on "
          f"port {server.port}, not to Host 'attacker.example:{server.port}' (a page on another "
          "site, or a tunnel: only the platform webhooks are served through one) (400)"
          for path in ("/_inspector/view", "/_fake/outbox", "/")],
    ]  # fmt: skip
