"""What a cold Messenger function imports before answering: not ``requests`` (with
charset_normalizer and its CJK codecs, idna and the cookie jars: about 100 modules). The
Send API's calls go out over urllib3 (``handlers.meta.GraphHTTP``) as requests sends them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from handlers import meta
from tests import messenger_requests as mr
from tests.fakes import fake_slack

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import handlers.messenger
answer = handlers.messenger.handler(json.loads(sys.argv[1]), None)
assert answer["statusCode"] == 200, answer
print(json.dumps(sorted({n.split(".")[0] for n in sys.modules}
                        & {"requests", "charset_normalizer", "slack_sdk", "slack_bolt"})))
"""


def test_a_cold_messenger_message_loads_no_requests(tmp_path: Path) -> None:
    with fake_slack() as fake:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SESSIONS_"))},
            **fake.edge_env(),
            "SESSIONS_DB": str(tmp_path / "sessions.sqlite3"),
        }
        event = mr.post(mr.single(mr.text("add milk", psid="7700001")))
        done = subprocess.run(
            [sys.executable, "-c", PROBE, json.dumps(event)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == []
        assert [c.body["recipient"] for c in fake.sends()] == [{"id": "7700001"}]


def test_a_graph_call_is_sent_as_requests_sends_it() -> None:
    body = {"recipient": {"id": "1"}, "message": {"text": "é ✓"}, "messaging_type": "RESPONSE"}
    with fake_slack() as fake:
        url = fake.graph_url + "/me/messages"
        params = {"access_token": "tok en/+="}
        ours = meta.GraphHTTP().post(url, params=params, json=body, timeout=(2, 2))
        theirs = requests.Session().post(url, params=params, json=body, timeout=(2, 2))
        mine, sent = fake.sends()
    assert (ours.status_code, ours.text) == (theirs.status_code, theirs.text)
    assert mine.path == sent.path  # the query string, encoded alike
    assert mine.body == sent.body == body
    assert mine.headers["Content-Type"] == sent.headers["Content-Type"] == "application/json"


def test_a_graph_call_through_a_proxy_goes_through_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """requests honours the environment's proxy settings: so do the Graph calls (through
    requests then), unless ``NO_PROXY`` leaves the host out."""
    with fake_slack() as fake:
        host = fake.graph_url.split("://")[1].split(":")[0]
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nobody listens there
        monkeypatch.setenv("NO_PROXY", "")
        with pytest.raises(requests.exceptions.ProxyError) as failed:
            meta.GraphHTTP().post(fake.graph_url + "/me/messages", json={}, timeout=(1, 1))
        assert not meta.never_sent(failed.value)  # as before: a proxy's failure is final
        monkeypatch.setenv("NO_PROXY", host)
        answer = meta.GraphHTTP().post(fake.graph_url + "/me/messages", json={}, timeout=(1, 1))
        assert answer.status_code == 200


@pytest.mark.parametrize(
    ("failure", "never_sent"),
    [
        ("refused", True),
        ("read timeout", False),
    ],
)
def test_never_sent_reads_urllib3s_own_failures(failure: str, never_sent: bool) -> None:
    import socket

    with fake_slack() as fake:
        url = fake.graph_url + "/me/messages"
        if failure == "refused":
            with socket.socket() as sock:  # a port nobody listens on
                sock.bind(("127.0.0.1", 0))
                url = f"http://127.0.0.1:{sock.getsockname()[1]}/v25.0/me/messages"
        else:
            fake.delays["/v25.0/me/messages"] = [1.5]
        with pytest.raises(Exception) as failed:
            meta.GraphHTTP().post(url, json={}, timeout=(1, 0.5))
    assert meta.never_sent(failed.value) is never_sent
