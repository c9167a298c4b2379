"""BOT=package.module:attribute selects the bot both edges and the local server run."""

from __future__ import annotations

import pytest

from examples.todo import TodoBot
from handlers.entry import load_bot
from handlers.settings import ConfigError, from_env


def test_an_instance_or_a_class() -> None:
    assert isinstance(load_bot("examples.todo:TodoBot"), TodoBot)
    assert isinstance(load_bot("benchmarks.slow_bot:bot"), TodoBot)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("examples.todo", "expected package.module:attribute"),
        ("no_such_module:bot", "No module named"),
        ("examples.todo:NoSuchBot", "NoSuchBot"),
        ("examples.todo:MAX_ITEMS", "has no turn(state, message) method"),
    ],
)
def test_a_bad_spec_names_the_problem(spec: str, says: str) -> None:
    with pytest.raises(ConfigError, match="BOT=") as error:
        load_bot(spec)
    assert says in str(error.value)


def test_the_setting_comes_from_the_environment() -> None:
    assert from_env({"BOT": "examples.todo:TodoBot"}).bot == "examples.todo:TodoBot"
    assert from_env({}).bot is None
