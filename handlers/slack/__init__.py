"""Slack: the platform's folder. Its edge (``edge``: signed requests into deliveries;
``answer``: the acks, a turn's replies rendered and sent), payload parsing (``parse``) and
rendering (``render``), the sender (``send``, its Web API client ``webapi`` and the retry
rule ``retry``), and its tenants: OAuth (``oauth``), workspace tokens (``tokens``), the
installation store (``installs``), many workspaces' events and clients (``workspaces``);
threads and assistant threads (``threads``), a streamed answer (``stream``); ``bolt`` is for
a Bolt app of your own.

The package is the Lambda entry point, ``handlers/slack.handler``: importing it imports the
edge (what the first event needs). It never imports another platform's folder.
"""

from __future__ import annotations

from typing import Any

from handlers.slack.answer import APOLOGY
from handlers.slack.edge import SlackEdge, build, handler, reset


def __getattr__(name: str) -> Any:
    """``NotSentRetryHandler`` from ``handlers.slack.retry``, loaded when asked for (it loads
    slack_sdk)."""
    if name == "NotSentRetryHandler":
        from handlers.slack.retry import NotSentRetryHandler

        return NotSentRetryHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["APOLOGY", "SlackEdge", "build", "handler", "reset"]
