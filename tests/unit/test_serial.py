"""The serialised path for busy items: one item's turns in order, one at a time (threads
locally, an SQS FIFO queue in the deploy, on moto), and the consumer's batch rules."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.pipeline.serial import FifoQueue, GroupThreads, group_of
from handlers.serial import consume


def test_one_groups_jobs_run_in_order_one_at_a_time_and_groups_in_parallel() -> None:
    running: dict[str, int] = {"a": 0, "b": 0}
    most = {"a": 0, "b": 0}
    seen: dict[str, list[int]] = {"a": [], "b": []}
    overlap = threading.Event()
    lock = threading.Lock()

    def run(job: dict[str, Any]) -> None:
        group = job["group"]
        with lock:
            running[group] += 1
            most[group] = max(most[group], running[group])
            if running["a"] and running["b"]:
                overlap.set()
        time.sleep(0.01)
        with lock:
            seen[group].append(job["n"])
            running[group] -= 1

    threads = GroupThreads(run, workers=4)
    for n in range(20):
        threads.submit({"group": "a", "n": n}, "a")
        threads.submit({"group": "b", "n": n}, "b")
    assert threads.drain(timeout=30)
    threads.shutdown()
    assert seen == {"a": list(range(20)), "b": list(range(20))}
    assert most == {"a": 1, "b": 1}  # never two of one item at once
    assert overlap.is_set()  # two items did run side by side


def test_a_failing_job_is_retried_and_does_not_stop_its_group() -> None:
    calls: list[int] = []

    def run(job: dict[str, Any]) -> None:
        calls.append(job["n"])
        if job["n"] == 1 and calls.count(1) == 1:
            raise RuntimeError("busy once")

    threads = GroupThreads(run, workers=2)
    for n in range(3):
        threads.submit({"n": n}, "g")
    assert threads.drain(timeout=30)
    threads.shutdown()
    assert calls == [0, 1, 1, 2]


def record(message_id: str, group: str, body: Any) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    return {"messageId": message_id, "body": text, "attributes": {"MessageGroupId": group}}


def test_a_batch_reports_the_failed_turn_and_the_rest_of_its_group() -> None:
    ran: list[str] = []

    def run(job: dict[str, Any]) -> None:
        if job["id"] == "a2":
            raise RuntimeError("store unavailable")
        ran.append(job["id"])

    batch = {
        "Records": [
            record("1", "A", {"id": "a1"}),
            record("2", "A", {"id": "a2"}),
            record("3", "B", {"id": "b1"}),
            record("4", "A", {"id": "a3"}),  # behind the failed one: not run now
            record("5", "B", "not json"),  # unreadable: dropped, never retried
            record("6", "B", {"id": "b2"}),
        ]
    }
    answer = consume(batch, run)
    assert ran == ["a1", "b1", "b2"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": "2"}, {"itemIdentifier": "4"}]}


def test_group_ids_hide_the_key_and_tell_items_apart() -> None:
    one = group_of("slack#T0001#C0001#channel", "poll:~channel")
    assert len(one) == 64 and "C0001" not in one
    assert one == group_of("slack#T0001#C0001#channel", "poll:~channel")
    assert one != group_of("slack#T0001#C0002#channel", "poll:~channel")


@pytest.fixture
def sqs() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def test_the_fifo_queue_keeps_one_items_turns_in_order_and_once(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName="serial.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"}
    )["QueueUrl"]
    queue = FifoQueue(url, client=sqs)
    group = group_of("slack#T0001#C0001#channel", "poll:~channel")
    for n in range(3):
        queue.submit({"n": n}, group)
    queue.submit({"n": 0}, group)  # the same hand-off again (a retried webhook): kept once
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"]
    )["Messages"]
    event = {
        "Records": [
            {"messageId": m["MessageId"], "body": m["Body"], "attributes": m["Attributes"]}
            for m in received
        ]
    }
    ran: list[int] = []
    assert consume(event, lambda job: ran.append(job["n"])) == {"batchItemFailures": []}
    assert ran == [0, 1, 2]
    assert {m["Attributes"]["MessageGroupId"] for m in received} == {group}
