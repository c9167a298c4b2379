"""When a Slack payload says its event happened, at the finest resolution it gives: what a user
delete's tombstone compares and what the store files the event's record by."""

from __future__ import annotations

import pytest

from handlers.slack.parse import event_time

HEADERS = {"x-slack-request-timestamp": ["1700000000"]}  # as Bolt keeps headers: lists


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        ({"event_time": 1700000123}, HEADERS, 1700000123.0),  # Events API, whole seconds
        # ... refined by the event's event_ts (microseconds) when it lies in that second
        (
            {"event_time": 1700000123, "event": {"event_ts": "1700000123.000100"}},
            HEADERS,
            1700000123.0001,
        ),
        (
            {"event_time": 1700000123, "event": {"event_ts": "1700000123.999999"}},
            HEADERS,
            1700000123.999999,
        ),
        # ... and not when it does not (another second, not a time, no event object)
        (
            {"event_time": 1700000123, "event": {"event_ts": "1700000122.500000"}},
            HEADERS,
            1700000123.0,
        ),
        ({"event_time": 1700000123, "event": {"event_ts": "soon"}}, HEADERS, 1700000123.0),
        ({"event_time": 1700000123, "event": "not-an-object"}, HEADERS, 1700000123.0),
        ({"event": {"event_ts": "1700000123.000100"}}, HEADERS, 1700000000.0),  # no event_time
        ({"actions": [{"action_ts": "1700000042.840180"}]}, HEADERS, 1700000042.84018),
        ({"command": "/todo", "trigger_id": "1.2"}, HEADERS, 1700000000.0),  # signed request
        ({"event_time": True}, HEADERS, 1700000000.0),  # a boolean is not a time
        ({"event_time": "soon"}, {"x-slack-request-timestamp": "1700000001"}, 1700000001.0),
        ({"actions": ["not-an-object"]}, {}, None),
        ({}, {"x-slack-request-timestamp": ["abc"]}, None),
    ],
)
def test_event_time(body: dict[str, object], headers: dict[str, object], expected: object) -> None:
    assert event_time(body, headers) == expected
