"""``make bench``: start DynamoDB Local, run each benchmark, print a table, write JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value

from benchmarks import (  # noqa: E402
    ack_latency,
    burst,
    cold_packaged,
    cold_start,
    hot_item,
    installs,
    operability,
    pipeline,
    readme,
    requests_per_turn,
    stream,
    throughput,
    timers,
    whatsapp,
)
from sessions.dynamodb import create_table, make_client  # noqa: E402
from tests import dynamodb_local  # noqa: E402

RESULTS = Path(__file__).with_name("results.json")


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "dynamodb_local": dynamodb_local.VERSION,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _section(title: str, lines: list[str]) -> None:
    print(f"\n{title}\n")
    for line in lines:
        print(line)


def main() -> int:
    results: dict[str, Any] = {"machine": machine()}
    with dynamodb_local.running() as server:
        client = make_client(endpoint_url=server.endpoint)
        probe = make_client(endpoint_url=server.endpoint)  # reads item sizes, unmetered
        results["requests_per_turn"] = requests_per_turn.run(client, probe)
        _section(
            "DynamoDB requests and capacity per turn: ours, the bare floor, Powertools "
            "idempotency + session load/save, the single-item variant (billed: AWS's sizing "
            "rules; Local: as DynamoDB Local reports it)",
            requests_per_turn.table(results["requests_per_turn"]),
        )
        _section(
            "Busy conversations, per event amortised (records move out to pages)",
            requests_per_turn.busy_table(results["requests_per_turn"]),
        )
        _section(
            "Latency of a new event's turn, the four ways interleaved (session core, no edge)",
            requests_per_turn.latency_table(results["requests_per_turn"]),
        )
        results["pipeline"] = pipeline.run(client)
        _section(
            "Whole handler path vs a bare GetItem + PutItem of the same item (interleaved)",
            pipeline.table(results["pipeline"]),
        )
        results["throughput"] = throughput.run(server.endpoint)
        _section(
            "Throughput through the session core (distinct conversations, then one shared)",
            throughput.table(results["throughput"]),
        )
        results["hot_item"] = hot_item.run(server.endpoint)
        _section(
            "Many writers on one item (a poll voted on at once), and a turn over two scopes",
            hot_item.table(results["hot_item"]),
        )
        results["burst"] = burst.run(server.endpoint)
        _section(
            "A burst on one conversation: 20 events of one second, records already paged",
            burst.table(results["burst"]),
        )
        results["installs"] = installs.run(server.endpoint)
        _section(
            "Many workspaces and pages: an install, first and warm events",
            installs.table(results["installs"]),
        )
        results["timers"] = timers.run(server.endpoint)
        _section(
            "Timers: a turn that sets one, its fire, a retried fire, a cancel, a cancelled fire",
            timers.table(results["timers"]),
        )
        results["stream"] = stream.run(server.endpoint)
        _section(
            "A streamed answer: the question, the answer, one more chunk; time to first chunk",
            stream.table(results["stream"]),
        )
        results["whatsapp"] = whatsapp.run(client, probe)
        _section(
            "WhatsApp: requests and billed units per turn (7-day records), the edge vs a "
            "minimal handler",
            whatsapp.table(results["whatsapp"]),
        )
        results["operability"] = operability.run(client)
        _section(
            "What encryption and logs/metrics cost per turn (warm container, interleaved)",
            operability.table(results["operability"]),
        )
        cold_table = "bench-cold-start"
        create_table(client, cold_table)
        results["cold_start"] = cold_start.run(server.endpoint, cold_table)
        _section("Cold start (fresh interpreters)", cold_start.table(results["cold_start"]))
        results["cold_packaged"] = cold_packaged.run(server.endpoint, cold_table)
        _section(
            "Cold start as deployed (the packaged zip, read-only, the runtime's Python) vs the "
            "minimal handler, interleaved",
            cold_packaged.table(results["cold_packaged"]),
        )
    results["ack_latency"] = ack_latency.run()
    _section("Ack latency of a slow turn", ack_latency.table(results["ack_latency"]))
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\nwritten to {RESULTS}")
    readme.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
