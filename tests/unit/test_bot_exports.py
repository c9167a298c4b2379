"""What a bot author imports: ``bot`` alone. The examples and the bots the README and docs show
import nothing else of ours (their tests add ``bot.testing``); ``bot``'s exports are what they
use, not the runtime's names; the todo bot's old ``BOT`` name still loads it."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import bot
import examples.todo
from bot.spec import DEFAULT_BOT
from handlers.entry import load_bot

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name != "__init__.py")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
#: What a bot's tests import besides ``bot`` (the documented test helper).
FOR_TESTS = {"bot.testing"}
#: Names only the runtime reads or raises: they stay in their modules, out of ``bot``.
RUNTIME_ONLY = {
    "BotSpec",
    "DEFAULT_BOT",
    "StateVersionError",
    "Checked",
    "MAX_FOLLOW_UPS",
    "effect_key",
    "reply_from_dict",
    "run_effect",
}


def imported(source: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every module the code imports (absolute; a relative import is the bot's own package),
    with the names it takes from it."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


#: The repository's packages: a bot takes ``bot`` of them, and anything else it needs from
#: the standard library or its own dependencies (the intake bot: ``requests``).
OURS = {"bot", "sessions", "handlers", "examples", "benchmarks", "tests"}


def ours(module: str) -> bool:
    return module.split(".")[0] in OURS


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_imports_only_bot(path: Path) -> None:
    outside = [
        module for module, _ in imported(path.read_text()) if ours(module) and module != "bot"
    ]
    assert outside == [], f"{path.name} imports {outside}: a bot imports `from bot import ...`"


def test_the_docs_show_a_bot_importing_only_bot() -> None:
    shown = [
        (doc.name, module)
        for doc in DOCS
        for block in PYTHON_BLOCK.findall(doc.read_text())
        for module, _ in imported(textwrap.dedent(block))
        if module.split(".")[0] == "bot" and module != "bot" and module not in FOR_TESTS
    ]
    assert shown == []


def test_what_the_examples_use_is_exported_and_nothing_of_the_runtimes() -> None:
    used = {
        name
        for path in EXAMPLES
        for module, names in imported(path.read_text())
        if module == "bot"
        for name in names
    }
    assert used <= set(bot.__all__)
    assert {"CronError", "zone"} <= set(bot.__all__)
    assert set(bot.__all__).isdisjoint(RUNTIME_ONLY)
    assert all(hasattr(bot, name) for name in bot.__all__)


def test_the_default_bot_is_the_todo_example() -> None:
    assert DEFAULT_BOT == "examples.todo:bot"
    assert load_bot(DEFAULT_BOT) is examples.todo.bot


def test_the_old_name_of_the_todo_bot_still_loads_it_and_says_it_moved() -> None:
    """``BOT=bot.todo:bot`` is in users' files: it loads the same bot, with a deprecation."""
    sys.modules.pop("bot.todo", None)  # imported fresh: its warning is given at import
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = load_bot("bot.todo:bot")
    assert old is examples.todo.bot
    [warning] = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert "examples.todo" in str(warning.message)
    from bot.todo import TodoBot

    assert TodoBot is examples.todo.TodoBot
