"""SnapStart: two copies restored from one snapshot share nothing unique.

The snapshot is simulated the way Lambda takes it: one process runs the init (the entry
builds its edge, the hooks are registered with a stand-in for the runtime's
``snapshot_restore_py``, the before-snapshot hooks run), then ``os.fork`` makes two copies of
that memory and each runs the after-restore hooks, then draws what a turn draws.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
from typing import Any

import pytest

from handlers import snapstart
from handlers.entry import Entry


class FakeRuntime:
    """``snapshot_restore_py``'s two functions, keeping the hooks to run them as Lambda does."""

    def __init__(self) -> None:
        self.before: list[tuple[Any, tuple[Any, ...]]] = []
        self.after: list[tuple[Any, tuple[Any, ...]]] = []

    def register_before_snapshot(self, func: Any, *args: Any, **kwargs: Any) -> None:
        self.before.append((func, args))

    def register_after_restore(self, func: Any, *args: Any, **kwargs: Any) -> None:
        self.after.append((func, args))


class Edge:
    telemetry = None
    built = 0

    def __init__(self) -> None:
        Edge.built += 1
        self.client_id = secrets.token_hex(8)  # stands for a client built with the edge

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        return {"statusCode": 200}


def _copy(runtime: FakeRuntime, entry: Entry[Edge], state: Any) -> dict[str, Any]:
    """What one restored copy holds and draws (runs in the child)."""
    # A fork re-seeds ``random`` in the child (os.register_at_fork); a snapshot restore does
    # not: the copy starts with the snapshot's generator state.
    random.setstate(state)
    for func, args in runtime.after:
        func(*args)
    edge = entry._edge
    assert edge is not None
    import boto3

    return {
        # The retry jitter of the turn runner, the deferral and the Send API.
        "jitter": [random.random() for _ in range(16)],
        "client": edge.client_id,
        "built": Edge.built,
        "boto3_session_dropped": boto3.DEFAULT_SESSION is None,
    }


def _fork(runtime: FakeRuntime, entry: Entry[Edge]) -> dict[str, Any]:
    state = random.getstate()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy
        status = 0
        try:
            os.write(write, json.dumps(_copy(runtime, entry, state)).encode())
        except BaseException as exc:
            os.write(write, json.dumps({"error": repr(exc)}).encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_restored_copies_share_no_random_draw_and_renew_their_clients() -> None:
    import boto3

    runtime = FakeRuntime()
    entry = Entry(Edge, warm=("json", "no_such_module_here"), snapstart=runtime)
    entry({})  # the init: the edge built (Lambda builds it at import)
    boto3.setup_default_session(region_name="us-east-1")
    random.random()  # the generator's state as the snapshot keeps it
    for func, args in runtime.before:
        func(*args)
    assert len(runtime.after) == 1
    snapshot_client = entry._edge.client_id if entry._edge else None

    a, b = _fork(runtime, entry), _fork(runtime, entry)

    assert "error" not in a and "error" not in b, (a, b)
    assert not set(a["jitter"]) & set(b["jitter"])
    assert a["client"] != b["client"] and snapshot_client not in (a["client"], b["client"])
    assert a["built"] == b["built"] == Edge.built + 1  # each copy built its own edge
    assert a["boto3_session_dropped"] and b["boto3_session_dropped"]


def test_prime_imports_the_first_events_modules_and_skips_missing_ones() -> None:
    sys.modules.pop("colorsys", None)
    snapstart.prime(["colorsys", "no_such_module_here"])
    assert "colorsys" in sys.modules


def test_outside_lambda_nothing_is_registered() -> None:
    assert snapstart.lambda_runtime() is None
    assert snapstart.install(renew=lambda: None) is False
