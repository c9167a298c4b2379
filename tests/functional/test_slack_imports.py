"""What a cold Slack function imports before answering: none of slack_sdk (whose package
imports asyncio, urllib.request, ssl and email: a third of the edge's cold import). A slash
command's answer rides in the ack; a DM's reply goes out through ``handlers.slack.webapi``.
Nor zoneinfo (and sysconfig), which only a timer's time zone needs (``bot.cron.zone``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import slack_requests as sr
from tests.fakes import fake_slack

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import handlers.slack
answer = handlers.slack.handler(json.loads(sys.argv[1]), None)
assert answer["statusCode"] == 200, answer
print(json.dumps(sorted({n.split(".")[0] for n in sys.modules}
                        & {"slack_sdk", "slack_bolt", "zoneinfo"})))
"""


def _first_event(event: dict[str, object], env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(event)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_cold_slash_command_or_dm_loads_no_slack_sdk(tmp_path: Path) -> None:
    with fake_slack() as fake:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SESSIONS_"))},
            **fake.edge_env(),
            "SESSIONS_DB": str(tmp_path / "sessions.sqlite3"),
        }
        slash = sr.slash("add milk", user="UCOLD1")
        assert _first_event(slash, env) == []
        dm = sr.json_event(sr.dm_body("add milk", channel="DCOLD1", user="UCOLD2"))
        assert _first_event(dm, env) == []  # its reply goes out without slack_sdk too
        assert [c.path for c in fake.calls] == ["/api/chat.postMessage"]


CERTIFICATES = """
import json, ssl, sys, urllib.request
loaded = []
for name in ("load_default_certs", "load_verify_locations", "set_default_verify_paths"):
    method = getattr(ssl.SSLContext, name)
    setattr(ssl.SSLContext, name, lambda self, *a, _m=method, _n=name, **k: (
        loaded.append(_n), _m(self, *a, **k))[1])
# Python 3.12's HTTPSHandler builds its TLS context (CA certificates) when it is made.
https_init = urllib.request.HTTPSHandler.__init__
urllib.request.HTTPSHandler.__init__ = lambda self, *a, **k: (
    loaded.append("HTTPSHandler"), https_init(self, *a, **k))[1]
import handlers.slack
answer = handlers.slack.handler(json.loads(sys.argv[1]), None)
assert answer["statusCode"] == 200, answer
print(json.dumps(loaded))
"""


def test_a_cold_dm_to_a_plain_http_web_api_reads_no_ca_certificates(tmp_path: Path) -> None:
    """urllib's default opener builds a TLS context (the system's CA certificates, tens of
    ms) on its first call whatever the URL's scheme: a DM's reply to an ``http://``
    ``SLACK_API_URL`` (a local fake, a proxy) needs none."""
    with fake_slack() as fake:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SESSIONS_"))},
            **fake.edge_env(),
            "SESSIONS_DB": str(tmp_path / "sessions.sqlite3"),
        }
        dm = sr.json_event(sr.dm_body("add milk", channel="DCOLD3", user="UCOLD3"))
        done = subprocess.run(
            [sys.executable, "-c", CERTIFICATES, json.dumps(dm)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == []
        assert [c.path for c in fake.calls] == ["/api/chat.postMessage"]
