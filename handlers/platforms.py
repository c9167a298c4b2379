"""The platforms the Lambda entries know, by name: where each one's adapter lives.

A platform is a folder of ``handlers`` (``handlers.slack``, ``handlers.messenger``) whose
package exposes ``build()``: its edge, as the environment configures it, with
``run_deferred(job)`` for a job handed off by one of its turns. The platform-neutral pipeline
(``handlers.pipeline``) never imports a platform; the entries that must reach one from a job
alone (the serial queue's consumer, ``handlers.serial``) look it up here, by the ``platform``
a job carries, and import it only then (a Messenger job never loads Slack's modules). A new
platform adds its folder and one line below.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: Platform name (a job's ``platform``) -> the package of its adapter. Instagram runs through
#: Messenger's edge (the same Graph webhook and Send API).
PLATFORMS: dict[str, str] = {
    "slack": "handlers.slack",
    "messenger": "handlers.messenger",
}


def adapter(platform: str) -> ModuleType:
    """The adapter package of ``platform``, imported now (``KeyError``: no such platform)."""
    return importlib.import_module(PLATFORMS[platform])


__all__ = ["PLATFORMS", "adapter"]
