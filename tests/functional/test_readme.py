"""What the README shows runs: each code block after a ``<!-- test: name -->`` marker."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import fake_slack
from tests.slack_requests import dm_body, json_event, slash

README = Path(__file__).resolve().parents[2] / "README.md"
#: What Lambda passes as the handler's context (the attributes Bolt's adapter reads).
CONTEXT = types.SimpleNamespace(
    function_name="app",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:app",
    aws_request_id="00000000-0000-0000-0000-000000000000",
)


def block(name: str) -> str:
    found = re.search(
        rf"<!-- test: {re.escape(name)} -->\n```python\n(.*?)```", README.read_text(), re.S
    )
    assert found, f"README has no block marked {name!r}"
    return found.group(1)


def module(name: str, *sources: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    for source in sources:
        exec(compile(source, f"README:{name}", "exec"), mod.__dict__)  # noqa: S102
    return mod


def test_the_minimal_bot_and_its_test_run() -> None:
    source = block("counter")
    assert len(source.strip().splitlines()) <= 30  # "a complete minimal bot in under 30 lines"
    module("counter", source, block("counter-test"))


def test_the_minimal_bot_runs_through_an_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    import handlers.slack
    from handlers.settings import from_env

    counter = module("counter", block("counter"))
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SESSIONS_DB", ":memory:")
        edge = handlers.slack.build(from_env(), bot=counter.bot)
        answer = edge.handle(slash("", command="/count", response_url=fake.response_url()))
        assert '"Count: 0"' in answer["body"]
        assert edge.handle(json_event(dm_body("+1")))["statusCode"] == 200
        assert fake.posts()[-1].body["text"] == "Count: 1"


def test_the_bolt_lambda_wiring_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.slack_requests import SECRET

    with fake_slack() as fake:
        monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_API_URL", fake.api_url)
        monkeypatch.delenv("SESSIONS_TABLE", raising=False)
        monkeypatch.setenv("SESSIONS_DB", str(tmp_path / "s.sqlite3"))
        app: Any = module("app", block("bolt-lambda"))
        event = dm_body("hi")
        assert app.handler(json_event(event), CONTEXT)["statusCode"] == 200
        assert app.handler(json_event(event, retry=1), CONTEXT)["statusCode"] == 200
        assert app.handler(json_event(dm_body("again")), CONTEXT)["statusCode"] == 200
        assert [c.body["text"] for c in fake.posts()] == ["count is 1", "count is 2"]
        answer = app.handler(slash("", command="/count", channel="D0001"), CONTEXT)
        assert answer["body"] == "count is 3"


def test_the_readme_shows_the_poll_example_as_it_is() -> None:
    """The README's poll is ``examples/poll.py`` exactly, and its multi-user test runs."""
    source = (README.parent / "examples" / "poll.py").read_text()
    assert block("poll") == source
    module("poll_test", block("poll-test"))


def test_the_timers_example_runs() -> None:
    module("timers_test", block("timers-test"))
