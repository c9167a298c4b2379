"""What ``make run`` refuses, over raw HTTP against the real server: a foreign ``Host`` (DNS
rebinding) on every local route, a foreign ``Origin`` on a state-changing one, a body that is
not JSON or comes without the per-run secret on the inspector's actions, an action on the
fake APIs outside this run's prefix, and a transcript named by a path. Each refusal is a 4xx
with its reason and a log line; what the page and the local clients send still works."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.dynamodb_local import free_port
from tests.e2e.test_local_server import Server
from tests.slack_requests import dm_body, sign


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, free_port())
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.proc.kill()
        srv.proc.wait()


def output(server: Server) -> str:
    """Stop the server (Ctrl-C) and return what it printed."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    out, _ = server.proc.communicate(timeout=20)
    server.proc = None
    return out


def page_secret(server: Server) -> str:
    """The per-run secret, as the inspector's page gets it (served in the page)."""
    page = requests.get(f"{server.url}/", timeout=10).text
    found = re.search(r'<meta name="inspector-secret" content="([^"]+)">', page)
    assert found is not None and found.group(1) != "__INSPECTOR_SECRET__"
    return found.group(1)


def act(server: Server, body: object, **headers: str) -> requests.Response:
    return requests.post(
        f"{server.url}/_inspector/act", data=json.dumps(body).encode(), headers=headers, timeout=30
    )


def journal(server: Server) -> list[object]:
    view = requests.get(f"{server.url}/_inspector/view", timeout=10).json()
    return [e["message"].get("text") for e in view["journal"]]


@pytest.mark.parametrize(
    "path", ["/", "/healthz", "/_inspector/view", "/_inspector/transcript", "/_fake/outbox",
             "/_fake/state?workspace=T0LOCAL&channel=D0LOCAL&user=U0LOCAL", "/_fake/base"]
)  # fmt: skip
def test_a_foreign_host_reads_nothing(server: Server, path: str) -> None:
    """A DNS-rebinding page: its own name, re-pointed at 127.0.0.1, is the request's Host."""
    refused = requests.get(
        f"{server.url}{path}", headers={"Host": f"rebind.example:{server.port}"}, timeout=10
    )
    assert refused.status_code == 400
    assert "answers only to 127.0.0.1, localhost or [::1]" in refused.text
    assert "rebind.example" in refused.text
    for name in ("127.0.0.1", "localhost", "[::1]"):
        answer = requests.get(
            f"{server.url}{path}", headers={"Host": f"{name}:{server.port}"}, timeout=10
        )
        assert answer.status_code == 200, (name, answer.text)
    other_port = requests.get(
        f"{server.url}{path}", headers={"Host": f"127.0.0.1:{server.port + 1}"}, timeout=10
    )
    assert other_port.status_code == 400


def test_the_webhooks_answer_through_a_tunnel(server: Server) -> None:
    """``/slack/events`` keeps working with a tunnel's name as Host: its signature guards it."""
    from handlers.tools.local import read_config

    secret = read_config(server.workdir / ".data" / "local.env")["SLACK_SIGNING_SECRET"]
    body = json.dumps(dm_body("list", team="T0LOCAL", channel="D0LOCAL", user="U0LOCAL")).encode()
    tunnel = {"Host": "abc123.tunnel.example", "content-type": "application/json"}
    answer = requests.post(
        f"{server.url}/slack/events", data=body, headers={**tunnel, **sign(body, secret=secret)},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200
    unsigned = requests.post(f"{server.url}/slack/events", data=body, headers=tunnel, timeout=30)
    assert unsigned.status_code == 401


def test_the_inspector_acts_only_for_its_own_page(server: Server) -> None:
    secret = page_secret(server)
    said = {"kind": "text", "text": "add milk"}
    json_type = {"content-type": "application/json"}

    # A text/plain form (what a page on any site can post without asking).
    plain = act(server, said, **{"content-type": "text/plain", "x-inspector-secret": secret})
    assert plain.status_code == 415 and "JSON bodies only" in plain.text
    # Another site's page: its Origin, even with the secret (which it could not read).
    foreign = act(server, said, **json_type, origin="https://evil.example",
                  **{"x-inspector-secret": secret})  # fmt: skip
    assert foreign.status_code == 403 and "cross-origin" in foreign.text
    assert act(server, said, **json_type, origin="null").status_code == 403
    # JSON without the secret, or with another run's.
    assert act(server, said, **json_type).status_code == 403
    stale = act(server, said, **json_type, **{"x-inspector-secret": "x" * len(secret)})
    assert stale.status_code == 403 and "X-Inspector-Secret" in stale.text
    retry = requests.post(
        f"{server.url}/_inspector/retry", json={"pk": "slack#T0LOCAL#U0LOCAL", "sk": "x"},
        timeout=10,
    )  # fmt: skip
    assert retry.status_code == 403
    assert journal(server) == []  # nothing reached the bot

    # What the page sends: its own origin, JSON, the secret.
    own = {**json_type, "x-inspector-secret": secret, "origin": server.url}
    done = act(server, said, **own)
    assert done.status_code == 200 and done.json()["status"] == 200
    assert journal(server) == ["add milk"]
    localhost = {**own, "origin": f"http://localhost:{server.port}",
                 "Host": f"localhost:{server.port}"}  # fmt: skip
    assert act(server, {"kind": "text", "text": "list"}, **localhost).status_code == 200
    not_object = act(server, ["kind", "text"], **own)
    assert not_object.status_code == 400 and "JSON object" in not_object.text

    out = output(server)
    assert "refused POST /_inspector/act: the inspector takes JSON bodies only" in out
    assert "refused POST /_inspector/act: cross-origin request refused" in out
    assert secret not in out  # the log never shows the secret


def test_the_fake_apis_take_actions_only_under_this_runs_secret(server: Server) -> None:
    prefix = requests.get(f"{server.url}/_fake/base", timeout=10).json()["prefix"]
    secret = prefix.removeprefix("/_fake/")
    assert secret == page_secret(server)
    post = {"channel": "D0LOCAL", "text": "planted"}
    for path in ("/_fake/slack/api/chat.postMessage", "/_fake/wrong/slack/api/chat.postMessage"):
        refused = requests.post(f"{server.url}{path}", json=post, timeout=10)
        assert refused.status_code == 403 and "/_fake/<secret>/" in refused.text
    foreign = requests.post(
        f"{server.url}{prefix}/slack/api/chat.postMessage", json=post,
        headers={"origin": "https://evil.example"}, timeout=10,
    )  # fmt: skip
    assert foreign.status_code == 403
    outbox = requests.get(f"{server.url}/_fake/outbox", timeout=10).json()["messages"]
    assert outbox == []
    api = f"{server.url}{prefix}/slack/api"
    posted = requests.post(f"{api}/chat.postMessage", json=post, timeout=10)
    assert posted.status_code == 200 and posted.json()["ok"] is True
    outbox = requests.get(f"{server.url}/_fake/outbox", timeout=10).json()["messages"]
    assert [m["text"] for m in outbox] == ["planted"]
    # The chat's slash commands answer through response URLs under the prefix.
    slash = server.client("slack-command")
    assert slash.send("add call mum")[0].startswith("Added “call mum”")
    assert slash.fakes == server.url + prefix
    out = output(server)
    assert "refused POST /_fake/slack/api/chat.postMessage" in out
    assert secret not in out


def test_replay_loads_a_transcript_by_id_never_by_path(server: Server, tmp_path: Path) -> None:
    secret = page_secret(server)
    headers = {"content-type": "application/json", "x-inspector-secret": secret}
    recorded = json.loads(
        (Path(__file__).resolve().parents[1] / "transcripts" / "todo-reminder.json").read_text()
    )
    outside = tmp_path / "outside.json"  # a file the request should never open
    outside.write_text(json.dumps(recorded))
    kept = server.workdir / ".data" / "transcripts"
    kept.mkdir(parents=True)
    (kept / "reminder.json").write_text(json.dumps(recorded))

    def replay(body: object) -> requests.Response:
        return requests.post(
            f"{server.url}/_inspector/replay", data=json.dumps(body), headers=headers, timeout=60
        )

    for body in (str(outside), "../outside.json", {"id": str(outside)},
                 {"id": "../../outside"}, {"id": "../outside.json"}, {"id": "a/../../outside"},
                 {"id": ".data/transcripts/reminder"}):  # fmt: skip
        refused = replay(body)
        assert refused.status_code == 400, body
        assert "turns" not in refused.json()
    assert "not a path" in replay({"id": "../outside"}).json()["error"]
    assert "JSON object" in replay(str(outside)).json()["error"]
    missing = replay({"id": "nothing-here"})
    assert missing.status_code == 400 and "no transcript 'nothing-here'" in missing.text

    by_id = replay({"id": "reminder"})
    assert by_id.status_code == 200 and by_id.json()["turns"] == len(recorded["turns"])
    uploaded = replay(recorded)  # the page's "Replay a saved one": the file's content
    assert uploaded.status_code == 200 and uploaded.json()["turns"] == len(recorded["turns"])


def test_make_admin_retry_replies_through_the_running_servers_fakes(tmp_path: Path) -> None:
    """``make admin ARGS="retry ..."`` (another process) sends a replay's replies to the
    running server's fake APIs: it asks the server for the per-run prefix."""
    import subprocess
    import sys

    from tests.e2e.test_local_server import _env

    broken = tmp_path / "broken"
    broken.write_text("yes")
    env = {"BOT": "tests.bots.inspected:bot", "BROKEN_FLAG": str(broken)}
    server = Server(tmp_path, free_port(), bot=env["BOT"], env=env)
    server.start()
    try:
        headers = {"content-type": "application/json", "x-inspector-secret": page_secret(server)}
        act = requests.post(f"{server.url}/_inspector/act", headers=headers, timeout=30,
                            data=json.dumps({"kind": "text", "text": "boom"}))  # fmt: skip
        assert act.status_code == 200
        [letter] = requests.get(f"{server.url}/_inspector/view", timeout=10).json()["dead_letters"]
        broken.unlink()  # the bug fixed
        done = subprocess.run(
            [sys.executable, "-m", "handlers.tools.admin", "retry", letter["pk"], letter["sk"]],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
            env={**_env(), **env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        outbox = requests.get(f"{server.url}/_fake/outbox", timeout=10).json()["messages"]
        assert "Fixed: boom handled." in [m["text"] for m in outbox]
    finally:
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait()
