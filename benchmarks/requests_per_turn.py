"""DynamoDB requests and capacity per turn: ours vs the common way (AWS Lambda Powertools'
idempotency utility around a session load and save, ``benchmarks/powertools_variant.py``), the
same workloads on the same engine, at two state sizes (200 B and 3 KB of JSON), counted with
botocore's event hooks. Capacity twice: as DynamoDB Local reports it, and billed by AWS's
sizing rules from the real item sizes (``benchmarks/billing.py``).

Scenarios: a new event; its duplicate; a conflict (a second event of the same conversation
commits while the first one's turn runs); a failing turn (the handler raises). The conflict
also counts lost updates: ours re-runs the loser's pure turn, the common way overwrites.
"""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from typing import Any

from benchmarks.capacity import Meter
from benchmarks.powertools_variant import Powertools
from sessions import ConversationKey, Sessions, TurnError
from sessions.dynamodb import DynamoDBStore, create_table

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
STATE: dict[str, Any] = SIZES["200 B"]


class Boom(RuntimeError):
    pass


def _counter(base: dict[str, Any]) -> Any:
    def count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
        new = {**base, **state, "n": state.get("n", 0) + 1}
        return new, [f"n={new['n']}"], f"n={new['n']}"

    return count


def _fail(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
    raise Boom("handler failed")


def _measure(meter: Meter, fn: Any) -> dict[str, float]:
    meter.reset()
    fn()
    assert meter.billing is not None
    return {
        "requests": float(sum(meter.requests.values())),
        "read_units": round(meter.read_units, 2),
        "write_units": round(meter.write_units, 2),
        "billed_read_units": round(meter.billing.read, 2),
        "billed_write_units": round(meter.billing.write, 2),
        "operations": dict(meter.requests),  # type: ignore[dict-item]
    }


def _metered(variant: Any, client: Any, probe: Any, table: str, base: dict[str, Any]) -> Any:
    with Meter(client, probe=probe) as meter:
        return variant(meter, client, table, base)


def ours(meter: Meter, client: Any, table: str, base: dict[str, Any]) -> dict[str, Any]:
    _count = _counter(base)
    sessions = Sessions(DynamoDBStore(table, client=client))
    key = ConversationKey.slack(
        team="T0BENCH", channel="D0BENCH", user=f"U{uuid.uuid4().hex[:8].upper()}"
    )
    sessions.run(key, "warm", _count, None)
    out: dict[str, Any] = {}
    out["new event"] = _measure(meter, lambda: sessions.run(key, "Ev1", _count, None))
    out["duplicate"] = _measure(meter, lambda: sessions.run(key, "Ev1", _count, None))

    def conflict() -> None:
        raced = []

        def loser(state: dict[str, Any], event: Any) -> Any:
            if not raced:
                # While this turn runs, another event of the conversation commits.
                raced.append(True)
                sessions.run(key, "Ev3", _count, None)
            return _count(state, event)

        sessions.run(key, "Ev2", loser, None)

    out["conflict (2 events)"] = _measure(meter, conflict)
    conversation = sessions.get(key)
    assert conversation is not None
    out["conflict (2 events)"]["lost_updates"] = 4 - conversation.state["n"]

    def failing() -> None:
        with contextlib.suppress(TurnError):
            sessions.run(key, "Ev4", _fail, None)

    out["failing turn"] = _measure(meter, failing)
    return out


def powertools(meter: Meter, client: Any, table: str, base: dict[str, Any]) -> dict[str, Any]:
    _count = _counter(base)
    common = Powertools(client, table)
    pk, sk = f"session#{uuid.uuid4().hex}", "D0BENCH"
    prefix = uuid.uuid4().hex
    common.run(pk, sk, f"{prefix}-warm", _count, None)
    out: dict[str, Any] = {}
    out["new event"] = _measure(meter, lambda: common.run(pk, sk, f"{prefix}-1", _count, None))
    out["duplicate"] = _measure(meter, lambda: common.run(pk, sk, f"{prefix}-1", _count, None))

    def conflict() -> None:
        def loser(state: dict[str, Any], event: Any) -> Any:
            common.run(pk, sk, f"{prefix}-3", _count, None)
            return _count(state, event)

        common.run(pk, sk, f"{prefix}-2", loser, None)

    out["conflict (2 events)"] = _measure(meter, conflict)
    out["conflict (2 events)"]["lost_updates"] = 4 - common.state(pk, sk)["n"]

    def failing() -> None:
        with contextlib.suppress(Boom):
            common.run(pk, sk, f"{prefix}-4", _fail, None)

    out["failing turn"] = _measure(meter, failing)
    return out


def run(client: Any, probe: Any) -> dict[str, Any]:
    """Per state size: ``{"ours": {scenario: figures}, "powertools": {...}}``."""
    out: dict[str, Any] = {}
    for size, base in SIZES.items():
        table = f"bench-requests-{uuid.uuid4().hex[:8]}"
        create_table(client, table)
        out[size] = {
            "state_bytes": len(json.dumps(base)),
            "ours": _metered(ours, client, probe, table, base),
            "powertools": _metered(powertools, client, probe, table, base),
        }
    return out


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| state | scenario | ours: requests | billed RCU | billed WCU | (Local: RCU / WCU) "
        "| Powertools: requests | billed RCU | billed WCU | lost updates (ours / Powertools) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, row in results.items():
        for scenario, m in row["ours"].items():
            b = row["powertools"][scenario]
            lost = f"{m['lost_updates']} / {b['lost_updates']}" if "lost_updates" in m else ""
            lines.append(
                f"| {size} | {scenario} | {m['requests']:.0f} | {m['billed_read_units']:.1f} "
                f"| {m['billed_write_units']:.1f} "
                f"| {m['read_units']:.1f} / {m['write_units']:.1f} "
                f"| {b['requests']:.0f} | {b['billed_read_units']:.1f} "
                f"| {b['billed_write_units']:.1f} | {lost} |"
            )
    return lines
