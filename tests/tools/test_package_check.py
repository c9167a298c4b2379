"""``make package BOT=mybot:bot``'s check of the zip, run as make runs it (``python
scripts/check_package.py`` from the repository's root): the bot and the handlers must import
from the zip's contents alone, never from the directory it is run in."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_package.py"


def check_package() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_package", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_bot_beside_the_zip_but_not_in_it_fails_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mybot.py`` at the root of the project (where make runs the check) and not in the zip:
    the check must fail naming it (it would fail at the first cold start)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "mybot.py").write_text("bot = object()\n")
    zipped = tmp_path / "chat-sessions.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("shipped.py", "bot = object()\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("PYTHONPATH", str(project))  # -I ignores it too
    check = check_package()
    [problem] = check.bot_check(zipped, "mybot:bot")
    assert problem.startswith("BOT=mybot:bot does not import from the zip")
    assert "No module named 'mybot'" in problem
    assert check.bot_check(zipped, "shipped:bot") == []


def test_the_handlers_import_check_does_not_see_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zip without ``handlers``, checked from the repository's root (which has it): the
    import check fails instead of importing the project's own copy."""
    zipped = tmp_path / "empty.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("README.txt", "nothing\n")
    monkeypatch.chdir(ROOT)
    [problem] = check_package().import_check(zipped)
    assert "handlers do not import from the zip alone" in problem
    assert "No module named 'handlers'" in problem
