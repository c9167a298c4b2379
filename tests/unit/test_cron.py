"""The cron rule of recurring timers: the next time, against a minute-by-minute walk of the
wall clock in zones with and without daylight saving; the expression EventBridge gets."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cron import Cron, CronError

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


def walk(cron: Cron, after: float, limit_days: int = 40) -> float | None:
    """The slow, obvious answer: every UTC minute, kept if its wall time matches."""
    zone = ZoneInfo(cron.tz)
    start = int(after // 60 + 1) * 60
    seen: set[tuple[int, int, int, int, int]] = set()
    for minute in range(limit_days * 24 * 60):
        at = start + minute * 60
        wall = dt.datetime.fromtimestamp(at, zone)
        stamp = (wall.year, wall.month, wall.day, wall.hour, wall.minute)
        if stamp in seen:
            continue  # a fall-back hour's second pass: once, the first
        seen.add(stamp)
        if (
            wall.minute in cron.minutes
            and wall.hour in cron.hours
            and wall.day in cron.days
            and wall.month in cron.months
            and wall.isoweekday() % 7 in cron.weekdays
        ):
            return float(at)
    return None


field = st.one_of(
    st.just("*"),
    st.integers(0, 59).map(str),
    st.tuples(st.integers(0, 29), st.integers(30, 59)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.integers(1, 30).map(lambda n: f"*/{n}"),
)
hours = st.one_of(st.just("*"), st.integers(0, 23).map(str), st.just("1-3"), st.just("*/6"))
weekdays = st.sampled_from(["*", "MON-FRI", "SUN", "0", "7", "SAT,SUN", "1-5/2"])


@settings(max_examples=60, deadline=None)
@given(
    minute=field,
    hour=hours,
    weekday=weekdays,
    tz=st.sampled_from(ZONES),
    after=st.floats(1.6e9, 1.9e9),
)
def test_next_after_is_the_first_matching_wall_time(
    minute: str, hour: str, weekday: str, tz: str, after: float
) -> None:
    cron = Cron.parse(f"{minute} {hour} * * {weekday}", tz)
    assert cron.next_after(after) == walk(cron, after)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # Berlin springs forward on 2026-03-29 at 02:00: 02:30 does not exist that day.
        ("2026-03-28T12:00:00+00:00", "2026-03-30T02:30:00+02:00"),
        # ... and falls back on 2026-10-25 at 03:00: 02:30 exists twice, fires once (first).
        ("2026-10-24T12:00:00+00:00", "2026-10-25T02:30:00+02:00"),
    ],
)
def test_daylight_saving_days(when: str, expected: str) -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    after = dt.datetime.fromisoformat(when).timestamp()
    got = cron.next_after(after)
    assert got == dt.datetime.fromisoformat(expected).timestamp()
    following = cron.next_after(got)  # type: ignore[arg-type]
    assert following is not None and following - got >= 23 * 3600  # not twice that night


def test_a_date_that_comes_rarely_and_one_that_never_does() -> None:
    leap = Cron.parse("0 0 29 FEB *", "UTC")
    after = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()
    assert leap.next_after(after) == dt.datetime(2028, 2, 29, tzinfo=dt.UTC).timestamp()
    assert Cron.parse("0 0 31 2 *", "UTC").next_after(after) is None


@pytest.mark.parametrize(
    ("expression", "aws"),
    [
        ("30 9 * * MON-FRI", "cron(30 9 ? * MON,TUE,WED,THU,FRI *)"),
        ("0 12 1 * *", "cron(0 12 1 * ? *)"),
        ("*/15 * * * *", "cron(*/15 * * * ? *)"),
        ("0 8 * jan,jul 0", "cron(0 8 ? JAN,JUL SUN *)"),
        ("0 8 * * 7", "cron(0 8 ? * SUN *)"),
    ],
)
def test_the_eventbridge_expression(expression: str, aws: str) -> None:
    assert Cron.parse(expression, "Europe/Berlin").eventbridge() == aws


@pytest.mark.parametrize(
    "expression",
    ["", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
     "5-1 * * * *", "*/0 * * * *", "a * * * *", "0 9 1 * MON", "1,,2 * * * *"],
)  # fmt: skip
def test_malformed_expressions_are_refused(expression: str) -> None:
    with pytest.raises(CronError):
        Cron.parse(expression, "UTC")


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(CronError, match="time zone"):
        Cron.parse("* * * * *", "Mars/Olympus")
