"""The guarantees suite runs in two modes: values stored in clear, in their item; and sealed
(envelope encryption with a local master key) with every state in the large-state store:
S3 (moto) for the moto store, a directory for the others.
``Sessions`` here is the runner with the current mode's options; the ``mode`` fixture
(tests/contract/conftest.py) picks the mode per test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sessions import Sessions as _Sessions
from sessions.blobs import DirectoryBlobs
from sessions.encryption import Envelope, LocalKeyring

MODE: dict[str, Any] = {}
#: Stores whose large states go to S3 in this mode (the moto store: S3 on the same mock).
S3_FOR: dict[int, Any] = {}


def seal(folder: Path | None) -> None:
    """Sealed and large when ``folder`` is given (the large-state directory), else clear."""
    MODE.clear()
    if folder is not None:
        MODE.update(
            encryption=Envelope(LocalKeyring(os.urandom(32))),
            large=DirectoryBlobs(folder),
            large_above=0,  # every state, however small, through the large-state store
        )


def Sessions(store: Any, **options: Any) -> _Sessions:
    mode = dict(MODE)
    if mode and id(store) in S3_FOR:
        mode["large"] = S3_FOR[id(store)]
    return _Sessions(store, **{**mode, **options})
