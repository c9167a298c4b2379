"""The import rules of the layout, read from the source (every import: module level, inside a
function, under ``TYPE_CHECKING``): the pipeline imports no platform, a platform's folder no
other platform's, the shared modules of ``handlers`` no platform, ``sessions`` and ``bot`` no
``handlers``; no import circle between folders. Each rule is also checked on a planted
violation, so that a checker that sees nothing fails here."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

from handlers.platforms import PLATFORMS

ROOT = Path(__file__).resolve().parents[2]
#: The platforms' packages, from the registry (a platform registered there gets the rules).
PLATFORM_PACKAGES = sorted(set(PLATFORMS.values()))
#: Third-party packages of one platform only.
SLACK_ONLY = ("slack_bolt", "slack_sdk")
#: handlers' modules that plug platforms in: the entries that reach a platform by name.
ENTRIES = ("handlers.serial", "handlers.platforms")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (relative imports resolved)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules(root: Path, *packages: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in packages:
        folder = root / package.replace(".", "/")
        files = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
        for path in files:
            if path.is_file():
                found[module_name(path, root)] = path
    return found


def within(name: str, packages: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def violations(root: Path, packages: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    """``module -> import`` for each import of a module of ``packages`` that is, or is inside,
    one of ``forbidden``."""
    forbidden = tuple(forbidden)
    return sorted(
        f"{name} -> {imported}"
        for name, path in modules(root, *packages).items()
        for imported in imports_of(path, root)
        if within(imported, forbidden)
    )


def folder_of(name: str) -> str:
    """A module's folder: ``handlers.slack`` for ``handlers.slack.parse``; the shared modules at
    ``handlers``' top level are each their own."""
    parts = name.split(".")
    return ".".join(parts[:2])


def cross_folder_circles(root: Path) -> list[list[str]]:
    """The import circles of ``handlers`` (tools aside) that span more than one folder."""
    names = {
        n: p for n, p in modules(root, "handlers").items() if not n.startswith("handlers.tools")
    }
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        graph[name] = {
            target
            for imported in imports_of(path, root)
            for target in (imported, imported.rpartition(".")[0])
            if target in names and target != name
        }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len({folder_of(m) for m in component}) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


# -- the rules, on the project ---------------------------------------------------------------


def test_the_pipeline_imports_no_platform_not_even_lazily() -> None:
    forbidden = [*PLATFORM_PACKAGES, *ENTRIES, *SLACK_ONLY]
    assert violations(ROOT, ["handlers.pipeline"], forbidden) == []


def test_a_platform_imports_no_other_platform() -> None:
    for platform in PLATFORM_PACKAGES:
        others = [p for p in PLATFORM_PACKAGES if p != platform]
        assert violations(ROOT, [platform], [*others, *ENTRIES]) == [], platform


def test_messengers_folder_imports_nothing_of_slack() -> None:
    assert violations(ROOT, ["handlers.messenger"], SLACK_ONLY) == []


def test_the_shared_modules_of_handlers_import_no_platform() -> None:
    shared = [
        n
        for n in modules(ROOT, "handlers")
        if n.count(".") == 1
        and not within(n, [*PLATFORM_PACKAGES, *ENTRIES, "handlers.tools"])
        and not within(n, ["handlers.pipeline", "handlers.installs", "handlers.bolt_session"])
    ]
    assert "handlers.settings" in shared and "handlers.entry" in shared
    assert violations(ROOT, shared, [*PLATFORM_PACKAGES, *ENTRIES, *SLACK_ONLY]) == []


def test_sessions_and_bot_never_import_handlers() -> None:
    assert violations(ROOT, ["sessions", "bot"], ["handlers"]) == []


def test_no_import_circle_spans_two_folders_of_handlers() -> None:
    assert cross_folder_circles(ROOT) == []


# -- the checker sees a violation ------------------------------------------------------------


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_a_lazy_platform_import_in_the_pipeline(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "handlers/__init__.py": "",
            "handlers/pipeline/__init__.py": "",
            "handlers/pipeline/core.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from handlers.messenger.send import SendAPI\n"
                "def run():\n    from handlers import slack\n    from . import delivery\n"
            ),
            "handlers/pipeline/delivery.py": "from ..slack.parse import event_time\n",
        },
    )
    assert violations(root, ["handlers.pipeline"], ["handlers.slack", "handlers.messenger"]) == [
        "handlers.pipeline.core -> handlers.messenger.send",
        "handlers.pipeline.core -> handlers.messenger.send.SendAPI",
        "handlers.pipeline.core -> handlers.slack",
        "handlers.pipeline.delivery -> handlers.slack.parse",
        "handlers.pipeline.delivery -> handlers.slack.parse.event_time",
    ]


def test_the_checker_finds_a_platform_importing_another(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "handlers/__init__.py": "",
            "handlers/messenger/__init__.py": "",
            "handlers/messenger/edge.py": "import slack_sdk\nimport handlers.slack.render\n",
        },
    )
    found = violations(root, ["handlers.messenger"], ["handlers.slack", *SLACK_ONLY])
    assert found == [
        "handlers.messenger.edge -> handlers.slack.render",
        "handlers.messenger.edge -> slack_sdk",
    ]


@pytest.mark.parametrize("lazy", [False, True])
def test_the_checker_finds_a_circle_between_folders(tmp_path: Path, lazy: bool) -> None:
    back = (
        "def consume():\n    from handlers.slack import edge\n"
        if lazy
        else "import handlers.slack.edge\n"
    )
    root = _plant(
        tmp_path,
        {
            "handlers/__init__.py": "",
            "handlers/slack/__init__.py": "",
            "handlers/slack/edge.py": "from handlers.pipeline import core\n",
            "handlers/pipeline/__init__.py": "",
            "handlers/pipeline/core.py": "from handlers.pipeline import serial\n",
            "handlers/pipeline/serial.py": back,
        },
    )
    assert cross_folder_circles(root) == [
        ["handlers.pipeline.core", "handlers.pipeline.serial", "handlers.slack.edge"]
    ]
