"""The serialised path in batches: the consumer hands each run of one group's messages to the
edge at once (a group commit), and reports the whole run and the rest of its group when it
fails; locally, a group's jobs that waited behind a running one are taken together, at most
:data:`~handlers.pipeline.serial.BATCH` at a time, still in order."""

from __future__ import annotations

import json
import threading
from typing import Any

from handlers.pipeline.hot import HotItems
from handlers.pipeline.serial import BATCH, GroupThreads
from handlers.serial import Consumer, consume


def record(message_id: str, group: str, body: Any) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    return {"messageId": message_id, "body": text, "attributes": {"MessageGroupId": group}}


def test_a_groups_consecutive_messages_go_to_the_edge_together() -> None:
    runs: list[list[str]] = []

    def run_many(jobs: list[dict[str, Any]]) -> None:
        runs.append([job["id"] for job in jobs])

    batch = {
        "Records": [
            record("1", "A", {"id": "a1"}),
            record("2", "A", {"id": "a2"}),
            record("3", "B", {"id": "b1"}),
            record("4", "A", {"id": "a3"}),
            record("5", "B", "not json"),  # unreadable: dropped, never retried
            record("6", "B", {"id": "b2"}),
        ]
    }
    assert consume(batch, lambda job: None, run_many) == {"batchItemFailures": []}
    assert runs == [["a1", "a2"], ["b1"], ["a3"], ["b2"]]


def test_a_failed_run_is_reported_whole_with_the_rest_of_its_group() -> None:
    runs: list[list[str]] = []

    def run_many(jobs: list[dict[str, Any]]) -> None:
        ids = [job["id"] for job in jobs]
        if "a2" in ids:
            raise RuntimeError("store unavailable")
        runs.append(ids)

    batch = {
        "Records": [
            record("1", "A", {"id": "a1"}),
            record("2", "A", {"id": "a2"}),
            record("3", "B", {"id": "b1"}),
            record("4", "A", {"id": "a3"}),  # behind the failed run: not run now
        ]
    }
    answer = consume(batch, lambda job: None, run_many)
    assert runs == [["b1"]]
    # Both of the failed run (a1 may have committed: a duplicate on the retry), and a3.
    assert answer == {
        "batchItemFailures": [
            {"itemIdentifier": "1"},
            {"itemIdentifier": "2"},
            {"itemIdentifier": "4"},
        ]
    }


def test_jobs_waiting_behind_a_running_one_are_taken_together_in_order() -> None:
    """A lone job is a batch of one as well (a group commit of one turn costs one request
    less than the turn alone): ``run`` is for a group runner without ``run_many``."""
    started = threading.Event()
    release = threading.Event()
    singles: list[int] = []
    batches: list[list[int]] = []

    def run(job: dict[str, Any]) -> None:
        singles.append(job["n"])

    def run_many(jobs: list[dict[str, Any]]) -> None:
        batches.append([job["n"] for job in jobs])
        if len(batches) == 1:
            started.set()
            release.wait(30)

    threads = GroupThreads(run, run_many=run_many, workers=2)
    threads.submit({"n": 0}, "g")
    assert started.wait(30)
    for n in range(1, BATCH + 3):  # queued while the first runs
        threads.submit({"n": n}, "g")
    release.set()
    assert threads.drain(timeout=30)
    threads.shutdown()
    assert singles == []
    assert batches == [[0], list(range(1, BATCH + 1)), [BATCH + 1, BATCH + 2]]


def test_a_batch_waits_for_its_containers_turn_in_flight_on_the_item() -> None:
    """Locally the serialised path runs in the webhook's process: a batch goes behind the
    webhook's try in flight on the item (it would race it, and the try would lose: a refused
    write, a second hand-off), and only that item's."""
    items = HotItems()
    entered, release, settled = threading.Event(), threading.Event(), threading.Event()

    def webhook() -> None:
        with items.flying("item"):
            entered.set()
            release.wait(30)

    def batch() -> None:
        items.settle("item", timeout=30)
        settled.set()

    flying = threading.Thread(target=webhook)
    flying.start()
    assert entered.wait(30)
    items.settle("another item", timeout=30)  # returns at once: nothing flies there
    waiting = threading.Thread(target=batch)
    waiting.start()
    assert not settled.wait(0.3)  # still behind the turn in flight
    release.set()
    assert settled.wait(30)
    flying.join()
    waiting.join()


def test_the_consumer_hands_a_lone_job_to_the_edges_batch_runner() -> None:
    """A group's lone message is a batch of one for the edge (which runs a plain turn on a
    shared item as a group commit of one, and anything else alone)."""
    calls: list[tuple[str, list[int]]] = []

    class Edge:
        def run_deferred(self, job: dict[str, Any]) -> None:
            calls.append(("alone", [job["n"]]))

        def run_batch(self, jobs: list[dict[str, Any]]) -> None:
            calls.append(("batch", [job["n"] for job in jobs]))

    consumer = Consumer()
    consumer._edges["slack"] = Edge()  # the edge the consumer would build on first use
    consumer.run_many([{"platform": "slack", "n": 1}])
    consumer.run_many([{"platform": "slack", "n": 2}, {"platform": "slack", "n": 3}])
    assert calls == [("batch", [1]), ("batch", [2, 3])]
