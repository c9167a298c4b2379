"""Many writers on one item, on DynamoDB Local, through the real Slack edge: 10, 20 and 50
people vote on one poll at the same moment (the poll is the channel's state, one item). Each
vote is a turn that may lose its race on the item: it re-reads and re-runs with jittered
backoff while the webhook's turn budget lasts (2 s of Slack's 3 s), then goes to the
serialised path (``handlers.pipeline.serial``: locally a thread per busy item, in the deploy
an SQS FIFO queue with the item as its message group), which runs the item's busy turns one
at a time without that deadline. Reported: DynamoDB requests and capacity per vote, the ack's time,
the time until each voter's confirmation was sent (p50/p99), how many were serialised, and
votes lost (the tally is checked against who voted). A second row per size has no serialised
path (a vote still busy at the deadline is apologised for and lost): what optimistic retries
alone give. Write units include what AWS bills for refused conditional writes and each
voter's membership mark (a transaction of two items, once per user and channel).

Then the cost of a turn over two scopes (a channel's state and the user's, committed in one
transaction) against a turn over one, on the session core."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import handlers.slack
from benchmarks.capacity import Meter
from examples.poll import PollBot
from handlers.settings import from_env
from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore, create_table, make_client
from tests import slack_requests as sr
from tests.fakes import fake_slack

SIZES = (10, 20, 50)


class Refusing:
    """A serialised path that cannot take the job: what the pipeline does without one."""

    def submit(self, job: Any, group: str) -> None:
        raise RuntimeError("no hand-off in this row")


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


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _votes(endpoint: str, table: str, voters: int, *, hand_off: bool) -> dict[str, Any]:
    client = make_client(endpoint_url=endpoint)
    store = DynamoDBStore(table, client=client)
    channel = "C" + uuid.uuid4().hex[:8].upper()
    with fake_slack() as fake:
        settings = from_env(fake.edge_env())
        kw: dict[str, Any] = {"sessions": Sessions(store), "bot": PollBot()}
        if not hand_off:
            kw["serialiser"] = Refusing()
        slack = handlers.slack.build(settings, **kw)
        handed = Counter[str]()
        if hand_off:
            inner = slack.serialiser

            class Counted:
                def submit(self, job: Any, group: str) -> None:
                    handed["jobs"] += 1
                    inner.submit(job, group)

            slack.serialiser = Counted()
        opened = slack.handle(sr.slash("Lunch? pizza, sushi, salad", command="/poll",
                                       channel=channel, user="U0AUTHOR"))  # fmt: skip
        assert opened["statusCode"] == 200
        events = [
            sr.block_action(
                f"1:{v % 3}",
                channel=channel,
                user=f"U0V{v:04d}",
                action_id="poll:vote",
                response_url=fake.response_url(f"v{v}"),
            )
            for v in range(voters)
        ]
        meter = Meter(client)  # requests and reported capacity (thread-safe enough: sums)
        refused = Refused(client)
        gate = threading.Barrier(voters + 1)
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
        if hand_off:
            inner.drain(timeout=120)  # type: ignore[attr-defined]
        told: dict[str, float] = {}
        for call in fake.responses():
            if str(call.body.get("text", "")).startswith("You voted"):
                told.setdefault(call.path, call.at)
        key = ConversationKey.slack(team="T0001", channel=channel, user="U0AUTHOR")
        poll = Sessions(DynamoDBStore(table, client=make_client(endpoint_url=endpoint))).get(
            key.scoped("channel", "poll")
        )
        counted = len(poll.state["polls"]["1"]["votes"]) if poll else 0
        meter.close()
        refused.close()
        times = [at - started for at in told.values()]
        calls = sum(meter.requests.values())
        # DynamoDB Local reports the capacity of what succeeded; a conditional write that
        # failed still bills its units on AWS: 1 per refused PutItem (these items are under
        # 1 KB), 2 per item of a cancelled transaction.
        read = meter.read_units
        write = meter.write_units + refused.units
        return {
            "voters": voters,
            "hand_off": hand_off,
            "requests_per_vote": round(calls / voters, 2),
            "by_operation": dict(meter.requests),
            "rcu_per_vote": round(read / voters, 2),
            "wcu_per_vote": round(write / voters, 2),
            "ack_p99_ms": round(_percentile(acks, 0.99) * 1000),
            "applied_p50_ms": round(_percentile(times, 0.5) * 1000),
            "applied_p99_ms": round(_percentile(times, 0.99) * 1000),
            "handed_off": handed["jobs"],
            "lost": voters - counted,
            "told": len(told),
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
        for hand_off in (True, False):
            rows.append(_votes(endpoint, table, voters, hand_off=hand_off))
    return {"votes": rows, "scopes": _scopes(endpoint, table)}


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| voters at once | path | requests / vote | RCU / vote | WCU / vote | ack p99 | "
        "applied p50 | applied p99 | serialised | lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["votes"]:
        path = "retries, then serialised" if r["hand_off"] else "retries only"
        lines.append(
            f"| {r['voters']} | {path} | {r['requests_per_vote']} | {r['rcu_per_vote']} | "
            f"{r['wcu_per_vote']} | {r['ack_p99_ms']} ms | {r['applied_p50_ms']} ms | "
            f"{r['applied_p99_ms']} ms | {r['handed_off']} | {r['lost']} |"
        )
    lines += [
        "",
        "| turn | requests | RCU | WCU | ms / turn |",
        "|---|---|---|---|---|",
    ]
    for r in results["scopes"]:
        ops = ", ".join(f"{v:g} {k}" for k, v in sorted(r["by_operation"].items()))
        lines.append(f"| {r['turn']} ({ops}) | {r['requests']} | {r['rcu']} | {r['wcu']} | "
                     f"{r['ms']} |")  # fmt: skip
    return lines
