"""The guarantees suite runs twice: values stored in clear, and sealed (envelope encryption
with a local master key). ``Sessions`` here is the runner with the current mode's encryption;
the ``sealing`` fixture (tests/contract/conftest.py) picks the mode per test."""

from __future__ import annotations

import os
from typing import Any

from sessions import Sessions as _Sessions
from sessions.encryption import Envelope, LocalKeyring

MODE: dict[str, Envelope | None] = {"encryption": None}


def seal(on: bool) -> None:
    MODE["encryption"] = Envelope(LocalKeyring(os.urandom(32))) if on else None


def Sessions(store: Any, **options: Any) -> _Sessions:
    return _Sessions(store, **{"encryption": MODE["encryption"], **options})
