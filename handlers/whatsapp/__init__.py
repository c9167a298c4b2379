"""WhatsApp Cloud API: one adapter of the delivery pipeline (``GET``/``POST /whatsapp/webhook``).

``handlers/whatsapp.handler`` is the Lambda entry point. Importing this package costs nothing:
the edge (and ``requests``) load on first use of ``handler``, ``build`` or ``reset``; the
payload modules (``parse``, ``render``) import only the standard library and ``bot``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build", "handler", "reset"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from handlers.whatsapp import edge

        return getattr(edge, name)
    raise AttributeError(f"module 'handlers.whatsapp' has no attribute {name!r}")
