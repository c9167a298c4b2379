"""What the docs test ran and what it could not, for the run's summary (``conftest.py``)."""

from __future__ import annotations

RAN: list[str] = []
NOT_RUN: list[str] = []
