"""Put the figures of the last ``make bench`` (``benchmarks/results.json``) into the README,
between its ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` markers, so that every table
there comes from one run. ``make bench`` runs it after writing the results."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    ack_latency,
    cold_start,
    hot_item,
    installs,
    operability,
    pipeline,
    requests_per_turn,
    throughput,
    timers,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"

TABLES: dict[str, tuple[str, Callable[[Any], list[str]]]] = {
    "requests": ("requests_per_turn", requests_per_turn.table),
    "busy": ("requests_per_turn", requests_per_turn.busy_table),
    "latency": ("requests_per_turn", requests_per_turn.latency_table),
    "pipeline": ("pipeline", pipeline.table),
    "throughput": ("throughput", throughput.table),
    "hot-item": ("hot_item", hot_item.table),
    "installs": ("installs", installs.table),
    "timers": ("timers", timers.table),
    "cold-start": ("cold_start", cold_start.table),
    "operability": ("operability", operability.table),
    "ack-latency": ("ack_latency", ack_latency.table),
}


def render(readme: str, results: dict[str, Any]) -> str:
    for name, (key, table) in TABLES.items():
        pattern = re.compile(
            rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", flags=re.DOTALL
        )
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- bench:{name} --> section")
        lines = "\n".join(table(results[key]))
        readme = pattern.sub(
            lambda m, lines=lines: f"{m.group(1)}{lines}\n{m.group(2)}",  # type: ignore[misc]
            readme,
        )
    return readme


def main() -> int:
    path = ROOT / "README.md"
    path.write_text(render(path.read_text(), json.loads(RESULTS.read_text())))
    print(f"README.md tables updated from {RESULTS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
