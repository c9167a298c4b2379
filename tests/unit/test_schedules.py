"""The local scheduler's file: many edges (threads of one server, processes) opening a new
one at once all get it (switching a new file to WAL can find it locked without waiting);
what is due comes back once per occurrence, a failure comes back later as the same one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from handlers.pipeline.timers import next_time
from sessions.schedules import OCCURRENCE, Schedule, SQLiteScheduler


def _open(path: str) -> bool:
    SQLiteScheduler(path).close()
    return True


def test_many_open_a_new_file_at_once(tmp_path: Path) -> None:
    for n in range(15):
        path = str(tmp_path / f"threads-{n}.sqlite3")
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(_open, [path] * 8))
    # Spawned, not forked: a fork of the test process copies locks that its other threads
    # (servers and loops of earlier tests) may hold at that instant, and the child hangs.
    with get_context("spawn").Pool(4) as processes:
        for n in range(15):
            path = str(tmp_path / f"processes-{n}.sqlite3")
            assert all(processes.map(_open, [path] * 4, chunksize=1))


def test_due_done_and_failed(tmp_path: Path) -> None:
    now = [1000.0]
    scheduler = SQLiteScheduler(str(tmp_path / "t.sqlite3"), clock=lambda: now[0],
                                next_time=next_time, backoff=10)  # fmt: skip
    payload = {"sessions_deferred": {"occurrence": OCCURRENCE}}
    scheduler.create(Schedule("once", 1100.0, payload))
    scheduler.create(Schedule("once", 9999.0, payload))  # the same name: left as it is
    scheduler.create(Schedule("daily", 1200.0, payload, "0 0 * * *", "UTC"))
    assert scheduler.take_due() == []
    now[0] = 1150.0
    (due,) = scheduler.take_due()
    assert due.payload == {"sessions_deferred": {"occurrence": 1100.0}}
    scheduler.failed(due)  # the store was down: the same occurrence, later
    assert scheduler.take_due() == []
    now[0] = 1161.0
    (again,) = scheduler.take_due()
    assert again.occurrence == 1100.0 and again.attempts == 1
    scheduler.done(again)
    now[0] = 1300.0
    (daily,) = scheduler.take_due()
    assert daily.name == "daily" and daily.occurrence == 1200.0
    scheduler.done(daily)
    assert [(s.name, s.at) for s in scheduler.pending()] == [("daily", 86_400.0)]
