"""What the README and the docs show runs: each code block after a ``<!-- test: name -->``
marker."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import fake_slack
from tests.slack_requests import dm_body, json_event, slash

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
#: What Lambda passes as the handler's context (the attributes Bolt's adapter reads).
CONTEXT = types.SimpleNamespace(
    function_name="app",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:app",
    aws_request_id="00000000-0000-0000-0000-000000000000",
)


def block(name: str) -> str:
    text = "\n".join(path.read_text() for path in DOCS)
    found = re.findall(rf"<!-- test: {re.escape(name)} -->\n```python\n(.*?)```", text, re.S)
    assert len(found) == 1, f"the docs have {len(found)} blocks marked {name!r}"
    return str(found[0])


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
    source = (ROOT / "examples" / "poll.py").read_text()
    assert block("poll") == source
    module("poll_test", block("poll-test"))


def test_the_timers_example_runs() -> None:
    module("timers_test", block("timers-test"))


def test_every_link_between_the_docs_lands() -> None:
    """A relative link (``docs/x.md#anchor``, ``x.md``, ``#anchor``) names a file that exists
    and, with an anchor, a heading in it."""

    def anchors(path: Path) -> set[str]:
        heads = re.findall(r"^#{1,4} (.+)$", re.sub(r"```.*?```", "", path.read_text(), flags=re.S),
                           re.M)  # fmt: skip
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}

    broken = []
    for path in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists() or (
                anchor and linked.suffix == ".md" and anchor not in anchors(linked)
            ):
                broken.append(f"{path.name}: {target}")
    assert broken == []


def test_the_readme_is_short_and_shows_the_inspector() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 300
    assert "![The inspector" in text and (ROOT / "docs" / "inspector.png").stat().st_size > 10_000
    for heading in ("## Quick start", "## Write your own bot", "## Deploy", "## Documentation"):
        assert heading in text
