from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract import sealing


@pytest.fixture(autouse=True, params=["clear", "sealed"])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every contract test in both modes: values in clear, and encrypted."""
    sealing.seal(request.param == "sealed")
    yield request.param
    sealing.seal(False)
