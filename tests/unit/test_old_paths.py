"""Names users have written into their own files keep working after ``handlers/`` was regrouped
by platform: the Lambda handlers serverless.yml names, and the import paths docs/slack.md
showed Bolt apps (the moved ones through a deprecated alias that names the new path)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_handler_serverless_yml_names_resolves() -> None:
    named = re.findall(r"^\s+handler: (\S+)$", (ROOT / "serverless.yml").read_text(), re.M)
    assert {"handlers/slack.handler", "handlers/messenger.handler"} <= set(named)
    for spec in named:
        module, _, attribute = spec.partition(".")
        assert callable(getattr(importlib.import_module(module.replace("/", ".")), attribute))


def test_the_platform_packages_are_their_edges_entries() -> None:
    import handlers.messenger
    import handlers.messenger.edge
    import handlers.slack
    import handlers.slack.edge

    assert handlers.slack.handler is handlers.slack.edge.handler
    assert handlers.messenger.handler is handlers.messenger.edge.handler
    assert handlers.slack.build is handlers.slack.edge.build
    assert handlers.messenger.reset == handlers.messenger.edge.handler.reset


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("handlers.installs", "handlers.slack.installs",
         ["TableInstallationStore", "TableOAuthStateStore"]),
        ("handlers.bolt_session", "handlers.slack.bolt", ["with_session"]),
    ],
)  # fmt: skip
def test_a_moved_module_keeps_its_old_path_as_a_deprecated_alias(
    old: str, new: str, names: list[str]
) -> None:
    alias, moved = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(alias, name) is getattr(moved, name)
    doc = alias.__doc__ or ""
    assert doc.startswith("Deprecated") and new in doc


def test_the_documented_paths_that_did_not_move() -> None:
    from handlers.settings import from_env
    from handlers.store import sessions_from_settings, store_from_settings

    assert callable(from_env) and callable(store_from_settings)
    assert callable(sessions_from_settings)


def test_the_docs_show_the_new_paths_and_mark_the_old_deprecated() -> None:
    text = (ROOT / "docs" / "slack.md").read_text()
    assert "from handlers.slack.bolt import with_session" in text
    assert "from handlers.slack.installs import TableInstallationStore" in text
    for old in ("handlers.bolt_session", "handlers.installs"):
        (line,) = [p for p in text.split("\n\n") if old in p]
        assert "Deprecated" in line
