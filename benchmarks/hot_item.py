"""Many writers on one item, on DynamoDB Local, through the real Slack edge: 10, 50 and 200
people vote on one poll at the same moment (the poll is the channel's state, one item), each
vote delivered 1-3 times. A vote gets one optimistic try; a lost race, or another turn of the
container on the item, hands it to the serialised path (``handlers.pipeline.serial``: locally
a thread per busy item, in the deploy an SQS FIFO queue with the item as its message group),
which applies the item's waiting turns, up to ten, as one group commit. Reported: requests
per vote (SQS's counted as the deploy makes them: a ``SendMessage`` per hand-off, a receive
and a delete per batch), capacity per vote, and the write units by kind of item
(:class:`ByItem`: the poll's state, the voters' membership marks, the records' pages, record
items of their own), the ack's time, the time until each voter's confirmation was sent
(p50/p99), the batches, and votes lost (the tally is checked against who voted). A second row
per size has no serialised path (inside Lambda with no queue: a busy vote goes to the
deferral and races again there). Write units include what AWS bills for refused conditional
writes.

Then the cost of a turn over two scopes (a channel's state and the user's, committed in one
transaction) against a turn over one, on the session core."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import Counter
from typing import Any

import handlers.slack
from benchmarks.billing import item_size
from benchmarks.capacity import Meter
from examples.poll import PollBot
from handlers.pipeline.deferral import ThreadDeferrer
from handlers.pipeline.serial import GroupThreads, ViaDeferral
from handlers.settings import from_env
from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore, create_table, make_client
from sessions.dynamodb_layout import PAGE
from sessions.keys import EVENT_MARK, TOMBSTONE_SK
from tests import slack_requests as sr
from tests.fakes import fake_slack

SIZES = (10, 50, 200)
#: Each vote is delivered this many times at once (the same signed request), at random.
COPIES = (1, 3)


class Counted:
    """The serialised path, counted as the deploy's SQS requests: a ``SendMessage`` per job
    handed off, and per batch the consumer ran a ``ReceiveMessage`` and a
    ``DeleteMessageBatch`` (what Lambda's poller makes for one batch of a group)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent = 0
        self.batches = 0
        #: How many jobs each batch took (a job the consumer ran alone: 1).
        self.sizes: list[int] = []
        self._lock = threading.Lock()
        if isinstance(inner, GroupThreads):
            many, one = inner.run_many, inner.run

            def run_many(jobs: list[Any]) -> None:
                with self._lock:
                    self.batches += 1
                    self.sizes.append(len(jobs))
                assert many is not None
                many(jobs)

            def run(job: Any) -> None:
                with self._lock:
                    self.batches += 1
                    self.sizes.append(1)
                one(job)

            inner.run_many, inner.run = run_many, run

    def submit(self, job: Any, group: str) -> None:
        with self._lock:
            self.sent += 1
        self.inner.submit(job, group)

    @property
    def requests(self) -> int:
        return self.sent + 2 * self.batches


class CountedDeferral:
    """The deferral, counted as the deploy's: an async ``Invoke`` per job handed off."""

    def __init__(self, inner: ThreadDeferrer) -> None:
        self.inner = inner
        self.sent = 0
        self._lock = threading.Lock()

    def submit(self, job: Any) -> None:
        with self._lock:
            self.sent += 1
        self.inner.submit(job)


class Refused:
    """Counts the write units of conditional writes DynamoDB refused (billed, not reported)."""

    def __init__(self, client: Any) -> None:
        self.units = 0.0
        self._lock = threading.Lock()
        self._events = client.meta.events
        self._events.register("after-call.dynamodb.*", self._after)

    def _after(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        code = (parsed.get("Error") or {}).get("Code", "")
        units = 0.0
        if model.name == "PutItem" and code == "ConditionalCheckFailedException":
            units = 1.0
        elif model.name == "TransactWriteItems" and code == "TransactionCanceledException":
            units = 2.0 * len(parsed.get("CancellationReasons") or [])
        if units:
            with self._lock:
                self.units += units

    def close(self) -> None:
        self._events.unregister("after-call.dynamodb.*", self._after)


class ByItem:
    """Write units by kind of item (the poll's state, its event records' pages, record items
    of their own, the voters' membership marks, the users' records), each item as AWS sizes
    it: 1 unit per KB of the item written (a transaction's items twice), 1 per refused
    conditional ``PutItem``, 2 per item of a cancelled transaction (as :class:`Refused`).
    The item before a write is not read (the state only grows here), so this is the written
    items' share of the total, which DynamoDB Local reports."""

    def __init__(self, client: Any, channel_pk: str) -> None:
        self.units: Counter[str] = Counter()
        self.items: Counter[str] = Counter()
        self.channel_pk = channel_pk
        self._lock = threading.Lock()
        self._events = client.meta.events
        self._events.register("before-parameter-build.dynamodb.*", self._before)
        self._events.register("after-call.dynamodb.*", self._after)

    def close(self) -> None:
        self._events.unregister("before-parameter-build.dynamodb.*", self._before)
        self._events.unregister("after-call.dynamodb.*", self._after)

    def kind(self, key: dict[str, Any]) -> str:
        pk, sk = key["pk"]["S"], key["sk"]["S"]
        if sk == TOMBSTONE_SK:
            return "user record"
        if EVENT_MARK not in sk:
            return "poll state" if pk == self.channel_pk else "other conversation item"
        if pk != self.channel_pk:
            return "membership mark"
        if EVENT_MARK + PAGE in sk:
            return "records' page"
        return "record item"

    def _before(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        writes: list[tuple[str, float, bool]] = []  # kind, units, transactional
        if model.name == "PutItem":
            writes.append((self.kind(params["Item"]), _kb(params["Item"]), False))
        elif model.name in ("UpdateItem", "DeleteItem"):
            writes.append((self.kind(params["Key"]), 1.0, False))
        elif model.name == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        writes.append((self.kind(item), _kb(item), False))
        elif model.name == "TransactWriteItems":
            for action in params.get("TransactItems", []):
                ((verb, body),) = action.items()
                if verb == "Put":
                    writes.append((self.kind(body["Item"]), 2 * _kb(body["Item"]), True))
                else:
                    writes.append((self.kind(body["Key"]), 2.0, True))
        if writes:
            context["hot_item_writes"] = writes

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        writes = context.get("hot_item_writes")
        if not writes:
            return
        code = (parsed.get("Error") or {}).get("Code", "")
        with self._lock:
            for kind, units, transactional in writes:
                if code == "ConditionalCheckFailedException":
                    kind, units = f"{kind} (refused)", 1.0
                elif code == "TransactionCanceledException":
                    kind, units = f"{kind} (refused)", 2.0
                elif code:
                    continue
                label = f"{kind}, in a transaction" if transactional else kind
                self.units[label] += units
                self.items[label] += 1


def _kb(item: dict[str, Any]) -> float:
    return float(max(1, math.ceil(item_size(item) / 1024)))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _votes(
    endpoint: str, table: str, voters: int, *, queue: bool, seed: int = 38
) -> dict[str, Any]:
    """``voters`` votes on one poll at once, each delivered 1-3 times, through the Slack edge.
    ``queue``: the serialised path (locally the per-item worker, counted as SQS); else none
    is configured (as inside Lambda without the queue): a busy turn goes to the deferral."""
    rng = random.Random(seed + voters)
    client = make_client(endpoint_url=endpoint)
    store = DynamoDBStore(table, client=client)
    channel = "C" + uuid.uuid4().hex[:8].upper()
    with fake_slack() as fake:
        settings = from_env(fake.edge_env())
        slack = handlers.slack.build(settings, sessions=Sessions(store), bot=PollBot())
        deferral = CountedDeferral(ThreadDeferrer(slack.run_deferred))
        slack.deferrer = deferral
        counted = Counted(slack.serialiser if queue else ViaDeferral())
        slack.serialiser = counted
        opened = slack.handle(sr.slash("Lunch? pizza, sushi, salad", command="/poll",
                                       channel=channel, user="U0AUTHOR"))  # fmt: skip
        assert opened["statusCode"] == 200
        events = []
        for v in range(voters):
            event = sr.block_action(
                f"1:{v % 3}",
                channel=channel,
                user=f"U0V{v:04d}",
                action_id="poll:vote",
                response_url=fake.response_url(f"v{v}"),
            )
            events += [event] * rng.randint(*COPIES)
        rng.shuffle(events)
        meter = Meter(client)  # requests and reported capacity (thread-safe enough: sums)
        refused = Refused(client)
        key = ConversationKey.slack(team="T0001", channel=channel, user="U0AUTHOR")
        by_item = ByItem(client, key.scoped("channel", "poll").pk)
        gate = threading.Barrier(len(events) + 1)
        acks: list[float] = []
        started = 0.0

        def vote(event: dict[str, Any]) -> None:
            gate.wait()
            t0 = time.monotonic()
            answer = slack.handle(event)
            assert answer["statusCode"] == 200
            acks.append(time.monotonic() - t0)

        threads = [threading.Thread(target=vote, args=(e,)) for e in events]
        for t in threads:
            t.start()
        gate.wait()
        started = time.monotonic()
        for t in threads:
            t.join()
        if queue:
            counted.inner.drain(timeout=300)
        deferral.inner.drain(timeout=300)
        told: dict[str, float] = {}
        times_told = Counter[str]()
        for call in fake.responses():
            if str(call.body.get("text", "")).startswith("You voted"):
                told.setdefault(call.path, call.at)
                times_told[call.path] += 1
        poll = Sessions(DynamoDBStore(table, client=make_client(endpoint_url=endpoint))).get(
            key.scoped("channel", "poll")
        )
        counted_votes = len(poll.state["polls"]["1"]["votes"]) if poll else 0
        meter.close()
        refused.close()
        by_item.close()
        times = [at - started for at in told.values()]
        queue_requests = counted.requests + deferral.sent
        calls = sum(meter.requests.values()) + queue_requests
        # DynamoDB Local reports the capacity of what succeeded; a conditional write that
        # failed still bills its units on AWS: 1 per refused PutItem (these items are under
        # 1 KB), 2 per item of a cancelled transaction.
        by_operation = dict(meter.requests)
        if queue:
            by_operation |= {"SendMessage": counted.sent,
                             "ReceiveMessage+DeleteMessageBatch": 2 * counted.batches}  # fmt: skip
        if deferral.sent:
            by_operation["Invoke (deferral)"] = deferral.sent
        return {
            "voters": voters,
            "deliveries": len(events),
            "hand_off": queue,
            "requests_per_vote": round(calls / voters, 2),
            "by_operation": by_operation,
            "rcu_per_vote": round(meter.read_units / voters, 2),
            "wcu_by_item": {
                kind: {"items": by_item.items[kind], "wcu_per_vote": round(units / voters, 3)}
                for kind, units in sorted(by_item.units.items(), key=lambda kv: -kv[1])
            },
            "wcu_per_vote": round((meter.write_units + refused.units) / voters, 2),
            "ack_p99_ms": round(_percentile(acks, 0.99) * 1000),
            "ack_max_ms": round(max(acks) * 1000),
            "applied_p50_ms": round(_percentile(times, 0.5) * 1000),
            "applied_p99_ms": round(_percentile(times, 0.99) * 1000),
            "handed_off": counted.sent + deferral.sent,
            "batches": counted.batches,
            "batch_sizes": sorted(Counter(getattr(counted, "sizes", [])).items()),
            "lost": voters - counted_votes,
            "told": len(told),
            "told_twice": sum(1 for n in times_told.values() if n > 1),
        }


def _scopes(endpoint: str, table: str, turns: int = 50) -> list[dict[str, Any]]:
    """Turns of one user on a warm state: one scope (the conversation's item) vs two (the
    channel's and the user's, one transaction)."""

    def one(state: Any, event: Any) -> Any:
        return {"n": (state or {}).get("n", 0) + 1}, [], None

    def two(state: Any, event: Any) -> Any:
        channel, mine = state
        return (
            ({"n": (channel or {}).get("n", 0) + 1}, {"n": (mine or {}).get("n", 0) + 1}),
            [],
            None,
        )

    rows = []
    for name, scopes in (("one scope", 1), ("two scopes", 2)):
        client = make_client(endpoint_url=endpoint)
        sessions = Sessions(DynamoDBStore(table, client=client))
        base = ConversationKey.slack(team="T0001", channel="C" + uuid.uuid4().hex[:8].upper(),
                                     user="U0ONE")  # fmt: skip
        channel, mine = base.scoped("channel", "bench"), base.scoped("conversation", "bench")
        for warm in range(3):
            if scopes == 1:
                sessions.run(mine, f"warm{warm}", one, None)
            else:
                sessions.run(channel, f"warm{warm}", two, None, scopes=[mine])
        with Meter(client, probe=make_client(endpoint_url=endpoint)) as meter:
            t0 = time.perf_counter()
            for i in range(turns):
                if scopes == 1:
                    sessions.run(mine, f"ev{i}", one, None)
                else:
                    sessions.run(channel, f"ev{i}", two, None, scopes=[mine])
            elapsed = time.perf_counter() - t0
        assert meter.billing is not None
        rows.append(
            {
                "turn": name,
                "requests": round(sum(meter.requests.values()) / turns, 2),
                "by_operation": {k: round(v / turns, 2) for k, v in meter.requests.items()},
                "rcu": round(meter.billing.read / turns, 2),
                "wcu": round(meter.billing.write / turns, 2),
                "ms": round(elapsed / turns * 1000, 1),
            }
        )
    return rows


def run(endpoint: str) -> dict[str, Any]:
    table = "bench-hot-item"
    create_table(make_client(endpoint_url=endpoint), table)
    rows = []
    for voters in SIZES:
        for queue in (True, False):
            rows.append(_votes(endpoint, table, voters, queue=queue))
    return {"votes": rows, "scopes": _scopes(endpoint, table)}


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| voters at once (deliveries) | path | requests / vote | RCU / vote | WCU / vote | "
        "ack p99 (max) | applied p50 | applied p99 | handed off (batches) | lost | told once |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["votes"]:
        path = "serialised, group commits" if r["hand_off"] else "no queue: the deferral"
        once = r["told"] - r["told_twice"]
        lines.append(
            f"| {r['voters']} ({r['deliveries']}) | {path} | {r['requests_per_vote']} | "
            f"{r['rcu_per_vote']} | {r['wcu_per_vote']} | {r['ack_p99_ms']} ms "
            f"({r['ack_max_ms']} ms) | {r['applied_p50_ms']} ms | {r['applied_p99_ms']} ms | "
            f"{r['handed_off']} ({r['batches']}) | {r['lost']} | {once} of {r['voters']} |"
        )
    lines += [
        "",
        "| voters at once, serialised | write units / vote, by item; batches (how many of each "
        "size) |",
        "|---|---|",
    ]
    for r in results["votes"]:
        if r["hand_off"] and "wcu_by_item" in r:
            parts = ", ".join(
                f"{kind} {v['wcu_per_vote']:g} ({v['items']} item{'s' * (v['items'] != 1)})"
                for kind, v in r["wcu_by_item"].items()
            )
            sizes = ", ".join(f"{n} of {size}" for size, n in r.get("batch_sizes", []))
            lines.append(f"| {r['voters']} | {parts}; batches: {sizes} |")
    lines += [
        "",
        "| turn | requests | RCU | WCU | ms / turn |",
        "|---|---|---|---|---|",
    ]
    for r in results.get("scopes", []):
        ops = ", ".join(f"{v:g} {k}" for k, v in sorted(r["by_operation"].items()))
        lines.append(f"| {r['turn']} ({ops}) | {r['requests']} | {r['rcu']} | {r['wcu']} | "
                     f"{r['ms']} |")  # fmt: skip
    return lines


def main() -> None:
    """``python -m benchmarks.hot_item``: this benchmark alone (DynamoDB Local started here);
    its rows replace the ones in ``benchmarks/results.json``."""
    import json
    import os
    from pathlib import Path

    from tests import dynamodb_local

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with dynamodb_local.running() as server:
        found = run(server.endpoint)
    for line in table(found):
        print(line)
    path = Path(__file__).with_name("results.json")
    results = json.loads(path.read_text()) if path.exists() else {}
    results["hot_item"] = found
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
