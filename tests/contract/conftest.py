from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract import sealing


@pytest.fixture(autouse=True, params=["clear", "sealed+large"])
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every contract test in both modes: values in clear in their item, and encrypted with
    every state in the large-state store."""
    sealing.seal(tmp_path / "large" if request.param != "clear" else None)
    yield request.param
    sealing.seal(None)
