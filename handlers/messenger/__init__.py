"""Messenger (and Instagram, through the same Graph webhook and Send API): the platform's
folder. Its edge (``edge``: signed webhook batches into deliveries, a turn's replies out),
payload parsing (``parse``) and rendering (``render``), the Send API client (``send``) and the
pages' tokens (``tokens``).

The package is the Lambda entry point, ``handlers/messenger.handler``: importing it imports
the edge. It never imports ``slack_bolt``, slack_sdk or another platform's folder.
"""

from __future__ import annotations

from handlers.messenger.edge import (
    APOLOGY,
    MIN_SEND_TIMEOUT,
    MessengerEdge,
    SendAPI,
    SendError,
    build,
    delivery_of,
    handler,
    reset,
)

__all__ = [
    "APOLOGY",
    "MIN_SEND_TIMEOUT",
    "MessengerEdge",
    "SendAPI",
    "SendError",
    "build",
    "delivery_of",
    "handler",
    "reset",
]
