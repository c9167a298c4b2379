"""Deprecated: moved to ``handlers.slack.bolt`` (import ``with_session`` from there). This
alias keeps the old import path of Bolt apps working; it will be removed in a later release."""

from __future__ import annotations

from handlers.slack.bolt import conversation_key, idempotency_key, with_session

__all__ = ["conversation_key", "idempotency_key", "with_session"]
