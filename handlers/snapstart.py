"""Lambda SnapStart: what the snapshot may hold, and what each restored copy renews.

With SnapStart (opt-in, ``SNAPSTART=true`` at deploy: docs/deploy.md) Lambda runs the
function's init once, when a version is published, snapshots the memory, and starts every
later container, possibly many at once, from that same snapshot. Two rules follow:

- Nothing unique may be created before the snapshot, or every copy shares it. Ours are made
  at use time: ids, page chain names, write tokens and nonces come from ``os.urandom`` /
  ``secrets`` (the kernel's, unique per call in each copy); effect keys derive from the event's
  own id. The one shared thing is the ``random`` module's generator (the retry jitter of the
  turn runner, the deferral and the Send API), seeded at interpreter start: each copy re-seeds
  it after restore, or copies that lose the same race retry in lockstep.
- Connections and credentials do not survive a snapshot: each copy builds its edge again
  after restore (the clients are built on first use from then on, with the copy's own
  credentials), and boto3's default session is dropped so that credentials are resolved
  again. The modules stay imported: that is what the snapshot saves.

Before the snapshot the entry imports what the first event would (boto3, botocore's client
machinery, the platform's HTTP client), so a restored copy does not pay for it; no client is
built and no credential read.

The hooks come from the Lambda runtime's ``snapshot_restore_py`` module (Python 3.12+),
imported defensively: it exists only inside Lambda. Elsewhere (tests, the local server)
``install`` takes a stand-in with the same two functions.
"""

from __future__ import annotations

import importlib
import logging
import random
import sys
from collections.abc import Callable, Iterable
from typing import Any, Protocol

log = logging.getLogger("handlers.snapstart")

Hook = Callable[..., Any]


class Runtime(Protocol):
    """What ``snapshot_restore_py`` offers (its two registration functions)."""

    def register_before_snapshot(self, func: Hook, *args: Any, **kwargs: Any) -> None: ...

    def register_after_restore(self, func: Hook, *args: Any, **kwargs: Any) -> None: ...


def lambda_runtime() -> Runtime | None:
    """The Lambda runtime's ``snapshot_restore_py`` module, or ``None`` outside Lambda (or on
    a runtime older than Python 3.12)."""
    try:
        import snapshot_restore_py  # type: ignore[import-not-found]
    except ImportError:
        return None
    return snapshot_restore_py  # type: ignore[no-any-return]


def prime(modules: Iterable[str]) -> None:
    """Import what the first event needs, before the snapshot (no client, no credential)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional module this deploy does not ship
            log.debug("snapstart: %s not importable", name)


def reseed() -> None:
    """A generator of this copy's own for ``random`` (the kernel's entropy)."""
    random.seed()


def forget_credentials() -> None:
    """Drop boto3's default session (and with it any credentials it resolved): the next
    client resolves this copy's credentials again."""
    boto3 = sys.modules.get("boto3")
    if boto3 is not None:
        boto3.DEFAULT_SESSION = None  # type: ignore[attr-defined]


def install(
    *,
    renew: Callable[[], None],
    warm: Iterable[str] = (),
    runtime: Runtime | None = None,
) -> bool:
    """Register the hooks: before the snapshot ``prime(warm)``; after each restore re-seed,
    forget credentials, then ``renew`` (the entry builds its edge again). Returns whether a
    runtime took them (``False`` outside Lambda: nothing to do)."""
    runtime = runtime or lambda_runtime()
    if runtime is None:
        return False
    runtime.register_before_snapshot(prime, tuple(warm))
    runtime.register_after_restore(after_restore, renew)
    return True


def after_restore(renew: Callable[[], None]) -> None:
    """What each restored copy runs first: its own seed and credentials, then fresh clients."""
    reseed()
    forget_credentials()
    renew()


__all__ = ["Runtime", "after_restore", "install", "lambda_runtime", "prime", "reseed"]
