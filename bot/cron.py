"""Cron expressions for recurring timers: the five fields of Unix cron, in a time zone.

    minute  hour  day-of-month  month  day-of-week
    30      9     *             *      MON-FRI        (9:30 on weekdays)

Each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list
of them; months and days of the week may be named (``JAN``, ``MON``; Sunday is 0 or 7). The
times are wall-clock times in the timer's zone (``Europe/Berlin``), daylight saving included:
a time that does not exist on a spring-forward day is skipped that day, a time that exists
twice on a fall-back day fires once (the first).

One rule differs from Unix cron, because EventBridge Scheduler (which fires them in the
deploy) cannot express it: day-of-month and day-of-week may not both be restricted. The same
expression then means the same thing locally, in tests and in the deploy
(:meth:`Cron.eventbridge` gives the deploy's form).

Standard library only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
#: (name, smallest, largest, names) of each field.
FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 7, DAYS),
)
#: How far ahead :meth:`Cron.next_after` looks before saying the expression never fires
#: (``0 0 31 2 *``): a leap day comes back within eight years.
HORIZON_DAYS = 366 * 8 + 2


class CronError(ValueError):
    """The expression or the time zone is malformed; the message says which field."""


def _number(text: str, field: str, names: tuple[str, ...], offset: int) -> int:
    upper = text.upper()
    if names and upper in names:
        return names.index(upper) + offset
    if not text.isdecimal():
        raise CronError(f"{field}: {text!r} is not a number" + (" or a name" if names else ""))
    return int(text)


def _field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    offset = 1 if field == "month" else 0
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: an empty item in {text!r}")
        span, _, step_text = part.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, field, (), 0)
            if step < 1:
                raise CronError(f"{field}: step {step_text!r} must be at least 1")
        if span == "*":
            start, end = low, high if field != "day-of-week" else 6
        elif "-" in span:
            a, _, b = span.partition("-")
            start, end = _number(a, field, names, offset), _number(b, field, names, offset)
        else:
            start = end = _number(span, field, names, offset)
            if step_text:
                end = high
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{field}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    if field == "day-of-week" and 7 in values:  # Sunday, either way
        values = (values - {7}) | {0}
    return frozenset(values)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``"UTC"``, ``"Europe/Berlin"``). zoneinfo is imported
    here, by the first timer that needs a zone: with sysconfig, which it reads its search
    path from, it is a few ms of every cold start that runs no timer."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron expression in a time zone."""

    expression: str
    tz: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  #: 0 = Sunday
    any_day: bool  #: day-of-month is ``*``
    any_weekday: bool  #: day-of-week is ``*``

    @classmethod
    def parse(cls, expression: str, tz: str = "UTC") -> Cron:
        """Raises :class:`CronError` for a malformed expression or an unknown zone."""
        parts = expression.split()
        if len(parts) != 5:
            raise CronError(
                f"cron {expression!r}: expected 5 fields (minute hour day-of-month month "
                f"day-of-week), got {len(parts)}"
            )
        zone(tz)
        sets = [_field(p, *spec[:3], spec[3]) for p, spec in zip(parts, FIELDS, strict=True)]
        any_day, any_weekday = parts[2] == "*", parts[4] == "*"
        if not any_day and not any_weekday:
            raise CronError(
                f"cron {expression!r}: restrict the day of the month or the day of the week, "
                "not both (EventBridge Scheduler cannot fire on either)"
            )
        minutes, hours, days, months, weekdays = sets
        return cls(expression, tz, minutes, hours, days, months, weekdays, any_day, any_weekday)

    def _day_matches(self, day: dt.date) -> bool:
        return (
            day.month in self.months
            and day.day in self.days
            and (day.isoweekday() % 7) in self.weekdays
        )

    def next_after(self, after: float) -> float | None:
        """The first time this expression fires strictly after ``after`` (epoch seconds);
        ``None`` if it never does (within eight years)."""
        where = zone(self.tz)
        start = dt.datetime.fromtimestamp(after, where)
        day = start.date()
        for _ in range(HORIZON_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        wall = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=where)
                        # A wall time that does not exist (spring forward) does not come back
                        # unchanged from UTC: skipped that day.
                        utc = wall.astimezone(dt.UTC)
                        if utc.astimezone(where).replace(tzinfo=None) != wall.replace(tzinfo=None):
                            continue
                        at = utc.timestamp()
                        if at > after:
                            return at
            day += dt.timedelta(days=1)
        return None

    def eventbridge(self) -> str:
        """The expression as EventBridge Scheduler takes it (six fields, ``?`` for the day
        field left free, days of the week by name): ``cron(30 9 ? * MON,TUE,WED,THU,FRI *)``;
        pass :attr:`tz` as its ``ScheduleExpressionTimezone``."""
        minute, hour, day, month, _ = self.expression.split()
        weekday = "?" if self.any_weekday else ",".join(DAYS[d] for d in sorted(self.weekdays))
        if not self.any_weekday:
            day = "?"
        return f"cron({minute} {hour} {day} {month.upper()} {weekday} *)"


__all__ = ["Cron", "CronError", "zone"]
