"""Deprecated: moved to ``handlers.slack.installs`` (import ``TableInstallationStore`` and
``TableOAuthStateStore`` from there). This alias keeps the old import path of Bolt apps
working; it will be removed in a later release."""

from __future__ import annotations

from handlers.slack.installs import TableInstallationStore, TableOAuthStateStore, team_id_of

__all__ = ["TableInstallationStore", "TableOAuthStateStore", "team_id_of"]
