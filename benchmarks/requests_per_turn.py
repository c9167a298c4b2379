"""DynamoDB requests and capacity per turn: ours vs the common way (benchmarks/baseline.py),
the same workloads on the same engine, counted with botocore's event hooks.

Scenarios: a new event; its duplicate; a conflict (a second event of the same conversation
commits while the first one's turn runs); a failing turn (the handler raises). The conflict
also counts lost updates: ours re-runs the loser's pure turn, the baseline overwrites.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from benchmarks.baseline import PowertoolsStyle
from benchmarks.capacity import Meter
from sessions import ConversationKey, Sessions, TurnError
from sessions.dynamodb import DynamoDBStore, create_table

STATE = {"items": [{"id": str(i), "text": f"item number {i} on the list"} for i in range(10)]}


class Boom(RuntimeError):
    pass


def _count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
    new = {**STATE, **state, "n": state.get("n", 0) + 1}
    return new, [f"n={new['n']}"], f"n={new['n']}"


def _fail(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
    raise Boom("handler failed")


def _measure(meter: Meter, fn: Any) -> dict[str, float]:
    meter.reset()
    fn()
    return {
        "requests": float(sum(meter.requests.values())),
        "read_units": round(meter.read_units, 2),
        "write_units": round(meter.write_units, 2),
        "operations": dict(meter.requests),  # type: ignore[dict-item]
    }


def ours(client: Any, table: str) -> dict[str, Any]:
    meter = Meter(client)
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


def baseline(client: Any, table: str) -> dict[str, Any]:
    meter = Meter(client)
    common = PowertoolsStyle(client, table)
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


def run(client: Any) -> dict[str, Any]:
    table = f"bench-requests-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    return {"ours": ours(client, table), "baseline": baseline(client, table)}


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | ours: requests | RCU | WCU "
        "| common way: requests | RCU | WCU | lost updates (ours / common) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario, m in results["ours"].items():
        b = results["baseline"][scenario]
        lost = f"{m['lost_updates']} / {b['lost_updates']}" if "lost_updates" in m else ""
        lines.append(
            f"| {scenario} | {m['requests']:.0f} | {m['read_units']:.1f} | {m['write_units']:.1f} "
            f"| {b['requests']:.0f} | {b['read_units']:.1f} | {b['write_units']:.1f} | {lost} |"
        )
    return lines
