"""The local server's refusal rules (``handlers.tools.guard``) as a pure function of the
method, the path and the headers a browser, a tunnel or a local client sends."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from handlers.tools.guard import Guard

SECRET = "s3cr3t-Run_Value"
GUARD = Guard(3000, SECRET)
OWN = {"host": "127.0.0.1:3000"}
PAGE = {**OWN, "origin": "http://127.0.0.1:3000", "content-type": "application/json",
        "x-inspector-secret": SECRET}  # fmt: skip


def status(method: str, path: str, headers: dict[str, str], guard: Guard = GUARD) -> int:
    refusal = guard.check(method, path, headers)
    return 0 if refusal is None else refusal.status


def test_the_loopback_names_with_the_port_are_the_only_hosts() -> None:
    for host in ("127.0.0.1:3000", "localhost:3000", "[::1]:3000", "LocalHost:3000"):
        assert status("GET", "/_inspector/view", {"Host": host}) == 0, host
    for host in ("127.0.0.1", "localhost:30001", "127.0.0.1:3000.evil.example", "evil:3000",
                 "127.0.0.2:3000", "0.0.0.0:3000", "", "[::1]"):  # fmt: skip
        assert status("GET", "/_fake/outbox", {"host": host}) == 400, host
    assert status("GET", "/", {}) == 400  # no Host at all
    assert status("GET", "/", {"host": "localhost"}, Guard(80, SECRET)) == 0  # default port


@given(st.text(max_size=40))
def test_any_other_host_is_refused_on_every_local_route(host: str) -> None:
    allowed = host.strip().lower() in {"127.0.0.1:3000", "localhost:3000", "[::1]:3000"}
    for path in ("/", "/healthz", "/_inspector/view", "/_fake/outbox", "/nope"):
        assert (status("GET", path, {"host": host}) == 0) is allowed


def test_the_webhooks_answer_a_tunnels_host_but_never_a_browsers_origin() -> None:
    tunnel = {"host": "abc.tunnel.example", "content-type": "application/json"}
    for path in ("/slack/events", "/messenger/webhook", "/whatsapp/webhook"):
        assert status("POST", path, tunnel) == 0
        assert status("POST", path, {**tunnel, "origin": "https://evil.example"}) == 403
    assert status("GET", "/slack/oauth_redirect", tunnel) == 0
    assert status("GET", "/healthz", tunnel) == 400


def test_a_state_changing_request_from_another_origin_is_refused() -> None:
    for origin in ("https://evil.example", "null", "http://127.0.0.1:3001", "http://localhost"):
        assert status("POST", "/_inspector/act", {**PAGE, "origin": origin}) == 403, origin
        assert status("OPTIONS", "/_inspector/act", {**OWN, "origin": origin}) == 403
    for origin in ("http://127.0.0.1:3000", "http://LOCALHOST:3000", "http://[::1]:3000"):
        assert status("POST", "/_inspector/act", {**PAGE, "origin": origin}) == 0, origin
    no_origin = {k: v for k, v in PAGE.items() if k != "origin"}
    assert status("POST", "/_inspector/act", no_origin) == 0  # a local client
    # A read is never refused for its Origin (a browser withholds the answer anyway).
    assert status("GET", "/_inspector/view", {**OWN, "origin": "https://evil.example"}) == 0


def test_the_inspectors_actions_take_json_and_the_secret() -> None:
    for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        assert status("POST", "/_inspector/act", {**PAGE, "content-type": ctype}) == 0
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                  "application/jsonp", ""):  # fmt: skip
        assert status("POST", "/_inspector/retry", {**PAGE, "content-type": ctype}) == 415
    for sent in ("", SECRET[:-1], SECRET + "x", SECRET.upper()):
        assert status("POST", "/_inspector/act", {**PAGE, "x-inspector-secret": sent}) == 403
    assert status("GET", "/_inspector/view", OWN) == 0  # reads need no secret


def test_the_fake_apis_act_only_under_the_runs_prefix() -> None:
    api = "/slack/api/chat.postMessage"
    assert status("POST", f"/_fake/{SECRET}{api}", OWN) == 0
    for path in (f"/_fake{api}", f"/_fake/{SECRET}x{api}", f"/_fake/{SECRET[:-1]}{api}",
                 f"/_fake/x/{SECRET}{api}", f"/_fake/{SECRET}"):  # fmt: skip
        assert status("POST", path, OWN) == 403, path
    assert status("GET", "/_fake/outbox", OWN) == 0
    assert GUARD.redact(f"/_fake/{SECRET}{api}") == f"/_fake/…{api}"
