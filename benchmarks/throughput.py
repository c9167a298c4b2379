"""Turns per second through the session core on DynamoDB Local: 1, 4 and 16 threads, each
on its own conversation, then all on one conversation (lost races retried and counted).
After each run every conversation's counter must equal its number of events: zero lost
updates, checked, not assumed."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore, create_table, make_client


def _count(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], None]:
    n = state.get("n", 0) + 1
    return {"n": n, "items": state.get("items", [])}, [f"n={n}"], None


def _run(sessions: Sessions, threads: int, events: int, *, shared: bool) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6].upper()
    keys = [
        ConversationKey.slack(
            team="T0BENCH", channel="D0BENCH", user=f"U{run_id}{0 if shared else t}"
        )
        for t in range(threads)
    ]
    retries = 0
    lock = threading.Lock()

    def worker(t: int) -> None:
        nonlocal retries
        key = keys[t]
        for i in range(events // threads):
            result = sessions.run(key, f"Ev{run_id}T{t}N{i}", _count, None)
            if result.attempts > 1:
                with lock:
                    retries += result.attempts - 1

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    elapsed = time.perf_counter() - started
    done = events // threads * threads
    expected = {k: 0 for k in keys}
    for t in range(threads):
        expected[keys[t]] += events // threads
    lost = 0
    for key, count in expected.items():
        conversation = sessions.get(key)
        lost += count - (conversation.state["n"] if conversation else 0)
    return {
        "threads": threads,
        "conversations": len(expected),
        "turns": done,
        "turns_per_s": round(done / elapsed, 1),
        "retries": retries,
        "lost_updates": lost,
    }


def run(endpoint: str, *, events: int = 480) -> list[dict[str, Any]]:
    from botocore.config import Config

    # One pooled connection per thread (botocore's default pool is 10).
    client = make_client(endpoint_url=endpoint, config=Config(max_pool_connections=32))
    table = f"bench-throughput-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    # Contention on one conversation needs more attempts than a webhook's default.
    sessions = Sessions(
        DynamoDBStore(table, client=client), max_attempts=50, backoff=0.002, max_backoff=0.05
    )
    _run(sessions, 4, 40, shared=False)  # warm-up: connections, JIT of DynamoDB Local
    rows = [_run(sessions, n, events, shared=False) for n in (1, 4, 16)]
    rows += [_run(sessions, n, events // 4, shared=True) for n in (4, 16)]
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| threads | conversations | turns | turns/s | lost races retried | lost updates |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['threads']} | {r['conversations']} | {r['turns']} | {r['turns_per_s']} "
            f"| {r['retries']} | {r['lost_updates']} |"
        )
    return lines
