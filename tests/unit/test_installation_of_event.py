"""Whose installation an Events API payload is for, read as Bolt reads it (its
``authorizations[0]`` before the body's ids), on payloads shaped as Slack sends them."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.slack.parse import installation_of_event


def body(**fields: Any) -> dict[str, Any]:
    return {"type": "event_callback", "api_app_id": "A0APP", "event": {"type": "app_uninstalled"},
            "event_id": "Ev1", "event_time": 1_700_000_000, **fields}  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # A workspace install (no Grid).
        (body(team_id="T0001", authorizations=[
            {"enterprise_id": None, "team_id": "T0001", "is_enterprise_install": False}]),
         (None, "T0001", False)),
        # A workspace of a Grid org, installed at team level.
        (body(team_id="T0042", enterprise_id="E0001", authorizations=[
            {"enterprise_id": "E0001", "team_id": "T0042", "is_enterprise_install": False}]),
         ("E0001", "T0042", False)),
        # An org-wide install: authorizations[0] names the org, its team is null.
        (body(team_id="T0042", enterprise_id="E0001", authorizations=[
            {"enterprise_id": "E0001", "team_id": None, "is_enterprise_install": True}]),
         ("E0001", "T0042", True)),
        # A shared channel: the authorization is the installing workspace's, not the body's.
        (body(team_id="T0009", authorizations=[
            {"enterprise_id": None, "team_id": "T0001", "is_enterprise_install": False}]),
         (None, "T0001", False)),
        # No authorizations (older payloads): the body; an org with no team is the org's.
        (body(team_id="T0001"), (None, "T0001", False)),
        (body(enterprise_id="E0001"), ("E0001", None, True)),
        (body(enterprise_id="E0001", team_id="T0042", is_enterprise_install="true"),
         ("E0001", "T0042", True)),
        # Malformed ids count as absent; nothing raises.
        (body(team_id=7, enterprise_id=["E"], authorizations=["x"]), (None, None, False)),
        (body(authorizations=[]), (None, None, False)),
    ],
)  # fmt: skip
def test_the_installation_of_an_event(
    payload: dict[str, Any], expected: tuple[str | None, str | None, bool]
) -> None:
    assert installation_of_event(payload) == expected
