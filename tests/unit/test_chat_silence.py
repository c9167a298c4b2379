"""Why ``make chat`` saw no reply (``handlers.tools.silence``): the journal's entry for the
request sent last, and the chat line each outcome gives."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.tools.silence import entry_of, why_silent

ME = "slack#T0LOCAL#U0LOCAL"


def entry(**fields: Any) -> dict[str, Any]:
    return {"user": "U0LOCAL", "depth": 0, "replay": False, "message": {"kind": "text"},
            "at": 100.0, "outcome": "applied", "replies": [], "effects": [], **fields}  # fmt: skip


def test_the_entry_is_the_users_request_since_it_was_sent() -> None:
    old = entry(at=50.0, outcome="duplicate")
    follow_up = entry(depth=1, outcome="dead letter")
    fire = entry(message={"kind": "timer"}, outcome="dead letter")
    other = entry(user="U0OTHER", outcome="dead letter")
    mine = entry(outcome="dropped", reason="no installation")
    answer = {"deliveries": [old, follow_up, fire, other, mine]}
    assert entry_of(answer, user="U0LOCAL", since=99.5) == mine
    assert entry_of({"deliveries": [old]}, user="U0LOCAL", since=99.5) is None
    assert entry_of(None, user="U0LOCAL", since=0) is False  # no journal served


def test_a_dead_letter_takes_its_reason_from_the_view() -> None:
    view = {"journal": [entry(outcome="dead letter")],
            "dead_letters": [{"at": 1, "error": "TurnError: old", "pk": ME},
                             {"at": 2, "error": "TurnError: KeyError", "pk": ME}]}  # fmt: skip
    found = entry_of(view, user="U0LOCAL", since=0)
    assert isinstance(found, dict) and found["reason"] == "TurnError: KeyError"
    assert why_silent(found, partition=ME) == (
        "(no reply: the turn failed and was recorded as a dead letter: TurnError: KeyError; "
        'make admin ARGS="dead-letters slack#T0LOCAL#U0LOCAL")'
    )


@pytest.mark.parametrize(
    ("found", "said"),
    [
        (None, "(no reply: the server ran no turn for it, it dropped the event before the bot"),
        (entry(outcome="dropped", reason="no installation; dropped"),
         "(no reply: the server dropped it before any turn: no installation; dropped)"),
        (entry(outcome="refused", status=401), "(no reply: the server refused it before any"),
        (entry(outcome="duplicate"), "(no reply: the server took it for a duplicate"),
        (entry(outcome="ignored"), "(no reply: the event was ignored"),
        (entry(outcome="serialised"), "(no reply yet: the conversation was busy"),
        (entry(version=3), "(the bot answered nothing: the turn ran, version 3)"),
        (entry(replies=[{"text": "hi"}]), "(no reply seen: if SLACK_API_URL"),
        (False, "(no reply seen: if SLACK_API_URL"),
    ],
)  # fmt: skip
def test_each_outcome_says_why(found: Any, said: str) -> None:
    assert why_silent(found, partition=ME).startswith(said)
