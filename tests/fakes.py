"""A local fake of the Slack Web API, Slack ``response_url`` endpoints and Meta's Graph Send
API, recording every call.

It is a real HTTP server on a free loopback port: ``SLACK_API_URL`` points at ``/api/``,
response URLs at ``/response/<id>``, ``MESSENGER_API_URL`` at ``/v25.0``. Nothing patches
module globals.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from sessions.store import EventWrite
STREAM_METHODS = ("/api/chat.startStream", "/api/chat.appendStream", "/api/chat.stopStream")
WHATSAPP_SEND = re.compile(r"/v25\.0/[0-9]+/messages")


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    #: ``time.monotonic()`` when it arrived
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeSlack:
    url: str
    calls: list[Call] = field(default_factory=list)
    #: path prefix -> what to answer before answering normally: an HTTP status, or a status
    #: with a JSON body (a Graph error, say)
    failures: dict[str, list[int | tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    #: path prefix -> seconds to wait before answering (after recording the call, which has
    #: then arrived: a client that times out cannot tell)
    delays: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    used_codes: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    refreshes: int = 0
    #: the ts answered to each ``chat.startStream`` call (by the call's id)
    stream_ts: dict[int, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"{self.url}/response/{name}"

    def posts(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path == "/api/chat.postMessage"]

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v25.0"

    def edge_env(self) -> dict[str, str]:
        """Environment for both edges: the test secrets, outbound calls pointed at this fake."""
        from tests.messenger_requests import APP_SECRET, VERIFY_TOKEN
        from tests.slack_requests import SECRET

        return {
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_API_URL": self.api_url,
            "MESSENGER_APP_SECRET": APP_SECRET,
            "MESSENGER_VERIFY_TOKEN": VERIFY_TOKEN,
            "MESSENGER_PAGE_TOKEN": "page-token-test",
            "MESSENGER_API_URL": self.graph_url,
        }

    def oauth_access(self, form: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """Slack's ``oauth.v2.access``: a code ``code-<team>`` (``code-<enterprise>-org`` for
        an org-wide install) is good once, for a token of that workspace."""
        if form.get("grant_type") == "refresh_token":  # token rotation: each refresh once
            with self.lock:
                old = str(form.get("refresh_token") or "")
                if old not in self.refresh_tokens:
                    return {"ok": False, "error": "invalid_refresh_token"}
                self.refresh_tokens.discard(old)
                self.refreshes += 1
                n = self.refreshes
                self.refresh_tokens.add(f"xoxe-1-refresh-{n}")
            return {"ok": True, "access_token": f"xoxe.xoxb-rotated-{n}", "token_type": "bot",
                    "refresh_token": f"xoxe-1-refresh-{n}", "expires_in": 43200}  # fmt: skip
        code = str(form.get("code") or "")
        with self.lock:
            if not code.startswith("code-") or code in self.used_codes:
                return {"ok": False, "error": "invalid_code"}
            self.used_codes.add(code)
        team = code.removeprefix("code-")
        org = team.endswith("-org")
        answer: dict[str, Any] = {
            "ok": True,
            "app_id": "A0APP",
            "access_token": f"xoxb-{team}",
            "token_type": "bot",
            "scope": "commands,chat:write",
            "bot_user_id": f"UBOT{team[:6]}",
            "team": None if org else {"id": team, "name": f"Team {team}"},
            "enterprise": {"id": team.removesuffix("-org"), "name": "Org"} if org else None,
            "is_enterprise_install": org,
            "authed_user": {"id": "U0INSTALLER", "scope": "", "token_type": "user"},
        }
        if team.endswith("-rot"):  # an app with token rotation: a token that expires soon
            answer["team"] = {"id": team.removesuffix("-rot"), "name": "Rotating"}
            answer["access_token"] = "xoxe.xoxb-first"
            answer["refresh_token"] = "xoxe-1-refresh-0"
            answer["expires_in"] = 600  # within the rotation window already
            with self.lock:
                self.refresh_tokens.add("xoxe-1-refresh-0")
        return answer

    def sends(self) -> list[Call]:
        """Send API messages (not sender actions: the typing indicator)."""
        with self.lock:
            return [
                c
                for c in self.calls
                if c.path.startswith("/v25.0/me/messages") and "sender_action" not in c.body
            ]

    def sender_actions(self) -> list[str]:
        with self.lock:
            return [
                str(c.body["sender_action"])
                for c in self.calls
                if c.path.startswith("/v25.0/me/messages") and "sender_action" in c.body
            ]

    def stream_calls(self) -> list[Call]:
        """``chat.startStream`` / ``appendStream`` / ``stopStream`` calls, in arrival order."""
        with self.lock:
            return [c for c in self.calls if c.path.split("?")[0] in STREAM_METHODS]

    def streams(self) -> dict[str, str]:
        """Each stream's text as Slack shows it (by ``ts``): what its start, appends and stop
        carried, in order."""
        shown: dict[str, str] = {}
        for call in self.stream_calls():
            ts = self.stream_ts.get(id(call)) or str(call.body.get("ts"))
            shown[ts] = shown.get(ts, "") + str(call.body.get("markdown_text") or "")
        return shown

    def whatsapp_sends(self) -> list[Call]:
        """Cloud API calls: ``POST /v25.0/<phone number id>/messages``."""
        with self.lock:
            return [c for c in self.calls if WHATSAPP_SEND.fullmatch(c.path)]

    def responses(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path.startswith("/response/")]

    def wait_for(
        self, what: Callable[[], list[Call]], count: int = 1, timeout: float = 20
    ) -> list[Call]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = what()
            if len(found) >= count:
                return found
            time.sleep(0.02)
        return what()


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            ctype = self.headers.get("content-type", "")
            if "json" in ctype:
                body = json.loads(raw or b"{}")
            else:
                body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            for prefix, statuses in fake.failures.items():
                if self.path.startswith(prefix) and statuses:
                    failure = statuses.pop(0)
                    status, error = failure if isinstance(failure, tuple) else (failure, None)
                    self.send_response(status)
                    if error is not None:
                        data = json.dumps(error).encode()
                        self.send_header("content-type", "application/json")
                        self.send_header("content-length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    else:
                        self.end_headers()
                    return
            call = Call(self.path, dict(self.headers), body)
            with fake.lock:
                fake.calls.append(call)
                if self.path.startswith("/api/chat.startStream"):  # each stream its own ts
                    fake.stream_ts[id(call)] = f"1700000000.{len(fake.stream_ts) + 1:06d}"
            for prefix, waits in fake.delays.items():
                if self.path.startswith(prefix) and waits:
                    time.sleep(waits.pop(0))
            if self.path.startswith("/tickets"):  # a ticketing system, for effects
                with fake.lock:
                    number = sum(c.path.startswith("/tickets") for c in fake.calls)
                payload = json.dumps({"id": f"TK-{number}"})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())
            elif self.path.startswith("/api/oauth.v2.access"):
                payload = json.dumps(fake.oauth_access(body, dict(self.headers)))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())
            elif self.path.startswith("/api/"):
                ts = fake.stream_ts.get(id(call), "1.0")
                payload = json.dumps({"ok": True, "channel": body.get("channel"), "ts": ts})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())
            elif WHATSAPP_SEND.fullmatch(self.path):  # the Cloud API's answer
                with fake.lock:
                    number = sum(bool(WHATSAPP_SEND.fullmatch(c.path)) for c in fake.calls)
                to = body.get("to")
                payload = json.dumps({"messaging_product": "whatsapp",
                                      "contacts": [{"input": to, "wa_id": to}],
                                      "messages": [{"id": f"wamid.fake{number}"}]})  # fmt: skip
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())
            else:
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

    return Handler


class _Server(ThreadingHTTPServer):
    # The default backlog (5) drops connections when a load test has 16 senders at once: a
    # reply would then time out (replies are at most once), as a real Slack never makes it.
    request_queue_size = 128
    daemon_threads = True


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    server = _Server(("127.0.0.1", 0), _handler(FakeSlack("")))
    fake = FakeSlack(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(fake)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


class QueueDeferrer:
    """Keeps handed-off jobs (a Lambda async invoke, held) until the test runs them; a job may
    be run twice, as Lambda's async retries may."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    def submit(self, job: dict[str, Any]) -> None:
        self.jobs.append(json.loads(json.dumps(job)))  # what the Lambda payload carries

    def drain(self, run: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
        """Run every job (and the jobs those hand off) once; return what ran."""
        ran = []
        while self.jobs:
            job = self.jobs.pop(0)
            run(job)
            ran.append(job)
        return ran


class StoreWrapper:
    """A real store that a test changes one primitive of: everything it does not override
    goes to ``inner`` unchanged."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FlakyStore(StoreWrapper):
    """A real store whose first ``failures`` commits raise ``StoreUnavailableError`` (throttled,
    say): an error of ours that heals, so the platform's redelivery or the deferral's retry
    must complete the turn."""

    def __init__(self, inner: Any, *, failures: int = 1) -> None:
        super().__init__(inner)
        self.failures = failures
        self.lock = threading.Lock()

    def _maybe_fail(self) -> None:
        from sessions import StoreUnavailableError

        with self.lock:
            fail = self.failures > 0
            self.failures -= 1 if fail else 0
        if fail:
            raise StoreUnavailableError("DynamoDB ThrottlingException (injected)")

    # Every conditional write: a turn's commit, a dead letter, a claim.
    def commit(self, write: EventWrite) -> None:
        self._maybe_fail()
        self.inner.commit(write)

    def record_failure(self, write: EventWrite) -> None:
        self._maybe_fail()
        self.inner.record_failure(write)

    def claim(self, write: EventWrite) -> None:
        self._maybe_fail()
        self.inner.claim(write)
