"""Ack latency of a slow turn on the real local server (``python -m handlers.tools.local``).

The server runs ``BOT=benchmarks.slow_bot:bot``, whose ``report`` takes 5 s and is declared
slow before the ack. We time, from the request: the HTTP 200 (Slack wants it within 3 s),
and the reply's arrival at the server's fake Slack routes (``response_url`` for a slash
command, ``chat.postMessage`` for a DM), read back through ``/_fake/outbox``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from benchmarks.slow_bot import SECONDS
from tests import slack_requests as sr
from tests.dynamodb_local import free_port

ROOT = Path(__file__).resolve().parent.parent
#: The local server's per-run secret, fixed here because this script sets the API URLs.
RUN = uuid.uuid4().hex


def _outbox(base: str) -> list[dict[str, Any]]:
    return requests.get(f"{base}/_fake/outbox", timeout=5).json()["messages"]  # type: ignore[no-any-return]


def _one(base: str, kind: str) -> dict[str, float]:
    seen = len(_outbox(base))
    if kind == "slash":
        body = urlencode(
            {
                "command": "/todo",
                "text": "report",
                "team_id": "T0001",
                "channel_id": "C0001",
                "user_id": "U0ACK",
                "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:10]}",
                "response_url": f"{base}/_fake/{RUN}/slack/response/{uuid.uuid4().hex[:8]}",
            }
        ).encode()
        ctype = "application/x-www-form-urlencoded"
    else:
        body = json.dumps(sr.dm_body("report", channel="D0ACK", user="U0ACK")).encode()
        ctype = "application/json"
    headers = {"content-type": ctype, **sr.sign(body)}
    started = time.perf_counter()
    answer = requests.post(f"{base}/slack/events", data=body, headers=headers, timeout=30)
    acked = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    while len(_outbox(base)) <= seen:
        if time.perf_counter() - started > 60:
            raise RuntimeError("the deferred reply never arrived")
        time.sleep(0.01)
    replied = time.perf_counter() - started
    return {"ack_ms": acked * 1000, "reply_ms": replied * 1000}


def run(*, repeats: int = 3) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "BOT": "benchmarks.slow_bot:bot",
            "SLACK_SIGNING_SECRET": sr.SECRET,
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "MESSENGER_APP_SECRET": "bench-app-secret",
            "MESSENGER_VERIFY_TOKEN": "bench-verify",
            "MESSENGER_PAGE_TOKEN": "bench-page",
            # The fake APIs take actions only under the server's per-run secret.
            "LOCAL_RUN_SECRET": RUN,
            "SLACK_API_URL": f"{base}/_fake/{RUN}/slack/api/",
            "MESSENGER_API_URL": f"{base}/_fake/{RUN}/graph/v25.0",
            "SESSIONS_DB": str(Path(tmp) / "ack.sqlite3"),
            "LOCAL_CONFIG": str(Path(tmp) / "local.env"),
        }
        env.pop("SESSIONS_TABLE", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "handlers.tools.local", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{base}/healthz", timeout=1).ok:
                        break
                except (requests.ConnectionError, requests.Timeout):
                    pass  # not listening yet, or listening while the bot is being built
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the local server did not start")
                time.sleep(0.05)
            out: dict[str, Any] = {"turn_seconds": SECONDS}
            for kind, label in (("slash", "slash command"), ("dm", "DM event")):
                runs = [_one(base, kind) for _ in range(repeats)]
                out[label] = {
                    "ack_ms": round(statistics.median(r["ack_ms"] for r in runs), 1),
                    "reply_ms": round(statistics.median(r["reply_ms"] for r in runs), 1),
                    "runs": len(runs),
                }
        finally:
            server.terminate()
            server.wait(timeout=10)
    return out


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        f"| a {results['turn_seconds']:.0f} s turn, local server "
        "| HTTP 200 after (ms) | reply after (ms) |",
        "|---|---|---|",
    ]
    for name, r in results.items():
        if isinstance(r, dict):
            lines.append(f"| {name} | {r['ack_ms']} | {r['reply_ms']} |")
    return lines
