"""A burst against ``make run``: many users at once (a button pressed by a whole channel) are
all answered, none reset. The standard library's listen backlog (5) reset 3 to 16 of 40
simultaneous requests here; the local server listens with a backlog of 128."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from handlers.tools.local import read_config
from tests.dynamodb_local import free_port
from tests.e2e.test_local_server import Server
from tests.slack_requests import dm_body, sign

USERS = 40
BURSTS = 3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, free_port())
    srv.start()
    yield srv
    srv.stop()


def burst(server: Server, secret: str, round_: int) -> tuple[list[int], list[str]]:
    """``USERS`` signed DMs, each on its own connection, released at the same instant."""
    bodies = [
        json.dumps(
            dm_body("list", team="T0LOCAL", channel=f"D{round_}{i:04d}", user=f"U{round_}{i:04d}")
        ).encode()
        for i in range(USERS)
    ]
    start = threading.Barrier(USERS)
    statuses: list[int] = []
    errors: list[str] = []

    def one(body: bytes) -> None:
        headers = {"content-type": "application/json", **sign(body, secret=secret)}
        start.wait()
        try:
            answer = requests.post(
                f"{server.url}/slack/events", data=body, headers=headers, timeout=120
            )
            statuses.append(answer.status_code)
        except requests.ConnectionError as exc:
            errors.append(type(exc.__context__ or exc).__name__ + f": {exc}"[:120])

    threads = [threading.Thread(target=one, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, errors


def test_forty_users_at_once_are_all_answered_none_reset(server: Server) -> None:
    secret = read_config(server.workdir / ".data" / "local.env")["SLACK_SIGNING_SECRET"]
    for round_ in range(BURSTS):
        statuses, errors = burst(server, secret, round_)
        assert errors == [], f"burst {round_ + 1}: {len(errors)} of {USERS} failed: {errors[:3]}"
        assert statuses == [200] * USERS
