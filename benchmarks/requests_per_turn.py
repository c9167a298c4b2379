"""DynamoDB requests, billed capacity and latency per turn, four ways on the same engine: ours,
the bare floor (``GetItem`` + ``PutItem``, no deduplication, last writer wins), the common way
(AWS Lambda Powertools' idempotency utility around a session load and save,
``benchmarks/powertools_variant.py``) and the single-item variant (state, version and the last
10 event ids in one item, ``benchmarks/single_item.py``), at two state sizes (200 B and 3 KB
of JSON).

Requests are counted with botocore's event hooks; capacity twice: as DynamoDB Local reports it,
and billed by AWS's sizing rules from the real item sizes (``benchmarks/billing.py``). Latency
is timed on a separate, unmetered client, the four ways interleaved round by round.

Scenarios: a new event of an existing conversation; its duplicate; a conflict (a second event
of the same conversation commits while the first one's turn runs; lost updates counted); and,
for ours, the first event of a conversation, a failing turn (the dead letter) and busy
conversations (200 events a minute apart, 600 a second apart, with millisecond times; per event
on average: once the conversation item is full its records move out to a page, one more write
every few dozen events).
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import time
import uuid
from typing import Any

from benchmarks.capacity import Meter
from benchmarks.powertools_variant import Powertools
from benchmarks.single_item import Bare, SingleItem
from sessions import ConversationKey, Sessions, TurnError
from sessions.dynamodb import DynamoDBStore, create_table, make_client

WORDS = [
    "call",
    "mum",
    "buy",
    "milk",
    "eggs",
    "bread",
    "fix",
    "the",
    "bike",
    "book",
    "flights",
    "renew",
    "passport",
    "water",
    "plants",
    "pay",
    "rent",
    "invoice",
    "clients",
    "send",
    "report",
    "review",
    "pull",
    "request",
    "plan",
    "sprint",
    "dentist",
    "at",
    "noon",
    "return",
    "parcel",
    "pick",
    "up",
    "kids",
    "gym",
    "laundry",
    "groceries",
    "email",
    "landlord",
    "update",
    "resume",
]


def state_of(size: int) -> dict[str, Any]:
    """A todo-like state whose JSON is about ``size`` bytes (varied text, so it compresses
    as real text does, not as a run of one letter)."""
    rng = random.Random(size)
    items: list[dict[str, str]] = []
    while len(json.dumps({"items": items})) < size - 40:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        items.append({"id": str(len(items) + 1), "text": words})
    return {"items": items}


SIZES = {"200 B": state_of(200), "3 KB": state_of(3 * 1024)}
VARIANTS = ("ours", "bare", "powertools", "single item")
HOUR = 3600.0
#: Busy conversations: (cadence, events, seconds between events).
BUSY = (("a minute", 200, 60.0), ("a second", 600, 1.0))


class Boom(RuntimeError):
    pass


def _counter(base: dict[str, Any]) -> Any:
    def count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], None]:
        new = {**base, **state, "n": state.get("n", 0) + 1}
        return new, [f"n={new['n']}"], None

    return count


def _fail(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
    raise Boom("handler failed")


class Ours:
    """Our turn, behind the interface the other variants have. An ``event`` that is a float
    is the event's time, and the clock reads it (plus the 50 ms a delivery takes): that is
    how a benchmark plays a conversation's rhythm (an event an hour, or a minute) in seconds.
    """

    def __init__(self, client: Any, table: str) -> None:
        self.now = time.time()
        self.sessions = Sessions(DynamoDBStore(table, client=client), clock=lambda: self.now)
        self.keys: dict[tuple[str, str], ConversationKey] = {}

    def key(self, pk: str, sk: str) -> ConversationKey:
        return self.keys.setdefault(
            (pk, sk), ConversationKey.slack(team="T0BENCH", channel=sk, user=pk.upper())
        )

    def run(self, pk: str, sk: str, idempotency_key: str, turn: Any, event: Any) -> Any:
        when = event if isinstance(event, float) else time.time()
        self.now = when + 0.05
        return self.sessions.run(self.key(pk, sk), idempotency_key, turn, None, event_time=when)

    def state(self, pk: str, sk: str) -> dict[str, Any]:
        conversation = self.sessions.get(self.key(pk, sk))
        return conversation.state if conversation else {}


def _variant(name: str, client: Any, table: str) -> Any:
    return {"ours": Ours, "bare": Bare, "powertools": Powertools, "single item": SingleItem}[name](
        client, table
    )


def _measure(meter: Meter, fn: Any) -> dict[str, Any]:
    meter.reset()
    fn()
    assert meter.billing is not None
    return {
        "requests": float(sum(meter.requests.values())),
        "read_units": round(meter.read_units, 2),
        "write_units": round(meter.write_units, 2),
        "billed_read_units": round(meter.billing.read, 2),
        "billed_write_units": round(meter.billing.write, 2),
        "operations": dict(meter.requests),
    }


def _scenarios(name: str, variant: Any, meter: Meter, base: dict[str, Any]) -> dict[str, Any]:
    count = _counter(base)
    pk, sk = f"u{uuid.uuid4().hex[:8]}", "D0BENCH"
    prefix = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {}
    first = _measure(meter, lambda: variant.run(pk, sk, f"{prefix}-0", count, None))
    if name == "ours":
        out["first event of a conversation"] = first
    out["new event"] = _measure(meter, lambda: variant.run(pk, sk, f"{prefix}-1", count, None))
    out["duplicate"] = _measure(meter, lambda: variant.run(pk, sk, f"{prefix}-1", count, None))

    def conflict() -> None:
        raced: list[bool] = []

        def loser(state: dict[str, Any], event: Any) -> Any:
            if not raced:  # while this turn runs, another event of the conversation commits
                raced.append(True)
                variant.run(pk, sk, f"{prefix}-3", count, None)
            return count(state, event)

        variant.run(pk, sk, f"{prefix}-2", loser, None)

    out["conflict (2 events)"] = _measure(meter, conflict)
    # The bare floor also applied the duplicate: it has no way to know.
    expected = 5 if name == "bare" else 4
    out["conflict (2 events)"]["lost_updates"] = expected - variant.state(pk, sk)["n"]
    if name == "ours":

        def failing() -> None:
            with contextlib.suppress(TurnError):
                variant.run(pk, sk, f"{prefix}-4", _fail, None)

        out["failing turn"] = _measure(meter, failing)
        for label, events, gap in BUSY:
            busy_pk = f"b{uuid.uuid4().hex[:8]}"
            start = time.time() - events * gap - 600

            def busy(pk: str = busy_pk, start: float = start, events: int = events,
                     gap: float = gap, label: str = label) -> None:  # fmt: skip
                for i in range(events):
                    # Messenger-like times: milliseconds, not on the second.
                    when = round(start + gap * i + 0.137 * (i % 7), 3)
                    variant.run(pk, sk, f"{prefix}-{label}-{i}", count, when)

            m = _measure(meter, busy)
            out[f"busy: {events} events, 1 {label} (per event)"] = {
                k: (round(v / events, 2) if isinstance(v, float) else v) for k, v in m.items()
            }
    return out


def _latency(client: Any, table: str, base: dict[str, Any], rounds: int) -> dict[str, Any]:
    count = _counter(base)
    variants = {name: _variant(name, client, table) for name in VARIANTS}
    sk = "D0TIME"
    pks = {name: f"t{uuid.uuid4().hex[:8]}" for name in VARIANTS}  # a conversation each
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    order = list(VARIANTS)
    rng = random.Random(7)
    start = time.time() - (rounds + 20) * HOUR
    for i in range(rounds + 20):
        rng.shuffle(order)  # no variant always runs right after another
        for name in order:
            t = time.perf_counter()
            # Ours reads the float as the event's time: an ordinary conversation, an event
            # an hour; the other variants ignore it.
            variants[name].run(pks[name], sk, f"{name}-{i}", count, start + i * HOUR)
            if i >= 20:
                samples[name].append(time.perf_counter() - t)
    floor = statistics.median(samples["bare"])
    out = {}
    for name, values in samples.items():
        ordered = sorted(values)
        out[name] = {
            "median_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[round(0.99 * (len(ordered) - 1))] * 1000, 2),
            "ratio": round(statistics.median(ordered) / floor, 2),
        }
    return out


def run(client: Any, probe: Any, *, rounds: int = 300) -> dict[str, Any]:
    """Per state size: ``{"scenarios": {variant: {scenario: figures}}, "latency": {...}}``."""
    metered = make_client(endpoint_url=client.meta.endpoint_url)
    out: dict[str, Any] = {}
    for size, base in SIZES.items():
        table = f"bench-requests-{uuid.uuid4().hex[:8]}"
        create_table(client, table)
        scenarios = {}
        for name in VARIANTS:
            with Meter(metered, probe=probe) as meter:
                scenarios[name] = _scenarios(name, _variant(name, metered, table), meter, base)
        out[size] = {
            "state_bytes": len(json.dumps(base)),
            "scenarios": scenarios,
            "latency": _latency(client, table, base, rounds),
        }
    return out


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| state | variant | scenario | requests | billed RCU | billed WCU | (Local: RCU / WCU) "
        "| lost updates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, row in results.items():
        for name, scenarios in row["scenarios"].items():
            for scenario, m in scenarios.items():
                lost = str(m["lost_updates"]) if "lost_updates" in m else ""
                lines.append(
                    f"| {size} | {name} | {scenario} | {m['requests']:g} "
                    f"| {m['billed_read_units']:g} | {m['billed_write_units']:g} "
                    f"| {m['read_units']:g} / {m['write_units']:g} | {lost} |"
                )
    return lines


def latency_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| state | variant | median ms | p99 ms | x bare Get+Put |",
        "|---|---|---|---|---|",
    ]
    for size, row in results.items():
        for name, m in row["latency"].items():
            lines.append(
                f"| {size} | {name} | {m['median_ms']:.2f} | {m['p99_ms']:.2f} | {m['ratio']:.2f} |"
            )
    return lines


def busy_table(results: dict[str, Any]) -> list[str]:
    """Busy conversations, per event amortised, against the floor's new event (the bare
    ``GetItem`` + ``PutItem`` of the same state)."""
    lines = [
        "| state | cadence | events | requests | billed RCU | billed WCU | x floor's WCU "
        "| pages written |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, row in results.items():
        floor = row["scenarios"]["bare"]["new event"]["billed_write_units"]
        for scenario, m in row["scenarios"]["ours"].items():
            if not scenario.startswith("busy"):
                continue
            events = int(scenario.split()[1])
            cadence = scenario.split(", ")[1].split(" (")[0]
            pages = m["operations"].get("BatchWriteItem", 0)
            lines.append(
                f"| {size} | {cadence} | {events} | {m['requests']:g} "
                f"| {m['billed_read_units']:g} | {m['billed_write_units']:g} "
                f"| {m['billed_write_units'] / floor:.2f} | {pages} |"
            )
    return lines
