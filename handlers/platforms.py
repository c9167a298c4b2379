"""The platforms the Lambda entries know, by name: where each one's adapter lives.

A platform is a folder of ``handlers`` (``handlers.slack``, ``handlers.messenger``) whose
package exposes ``build()``: its edge, as the environment configures it, with
``run_deferred(job)`` for a job handed off by one of its turns. The platform-neutral pipeline
(``handlers.pipeline``) never imports a platform; the entries that must reach one from a job
alone (the serial queue's consumer, ``handlers.serial``) look it up here, by the ``platform``
a job carries, and import it only then (a Messenger job never loads Slack's modules). A new
platform adds its folder and its lines below: its package, the function that serves it (when
another's does), and the alphabet of its ids when the session core does not know it
(``sessions.keys.register_platform``: a key of an unregistered platform is refused).
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType

from sessions.keys import register_platform

#: Platform name (a job's ``platform``) -> the package of its adapter. Instagram runs through
#: Messenger's edge (the same Graph webhook and Send API).
PLATFORMS: dict[str, str] = {
    "slack": "handlers.slack",
    "messenger": "handlers.messenger",
    "whatsapp": "handlers.whatsapp",
}
#: A platform served by another's function and edge (a job's, a timer's target).
SERVED_BY: dict[str, str] = {"instagram": "messenger"}
#: Ids of platforms the session core does not know: each a regular expression of the ids its
#: keys hold (workspace, channel, user), registered with ``sessions.keys`` on import.
ID_ALPHABETS: dict[str, str] = {
    # The WhatsApp number's id, and the user as ``from`` says: a phone number's digits or
    # (from 2026) a business-scoped user id such as ``US.13491208655302741918``: opaque.
    "whatsapp": r"[A-Za-z0-9._-]{1,128}",
}

for _name, _alphabet in ID_ALPHABETS.items():
    register_platform(_name, re.compile(_alphabet))


def function_of(platform: str) -> str:
    """The name of the function (and edge) that serves ``platform``'s events and jobs."""
    return SERVED_BY.get(platform, platform)


def adapter(platform: str) -> ModuleType:
    """The adapter package of ``platform``, imported now (``KeyError``: no such platform)."""
    return importlib.import_module(PLATFORMS[function_of(platform)])


__all__ = ["ID_ALPHABETS", "PLATFORMS", "SERVED_BY", "adapter", "function_of"]
