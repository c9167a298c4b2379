"""Put the figures of the last ``make bench`` (``benchmarks/results.json``) into the docs (the
README and ``docs/*.md``), between each ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
marker, so that every table there comes from one run. ``make bench`` runs it after writing
the results."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    ack_latency,
    burst,
    cold_packaged,
    cold_start,
    hot_item,
    installs,
    operability,
    pipeline,
    requests_per_turn,
    stream,
    throughput,
    timers,
    whatsapp,
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
    "burst": ("burst", burst.table),
    "installs": ("installs", installs.table),
    "timers": ("timers", timers.table),
    "stream": ("stream", stream.table),
    "cold-start": ("cold_start", cold_start.table),
    "cold-packaged": ("cold_packaged", cold_packaged.table),
    "operability": ("operability", operability.table),
    "ack-latency": ("ack_latency", ack_latency.table),
    "whatsapp": ("whatsapp", whatsapp.table),
}


def documents() -> list[Path]:
    """Where tables may be: the README and every page of ``docs/``."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def render(text: str, results: dict[str, Any], names: list[str]) -> str:
    """``text`` with the tables ``names`` filled in from ``results``."""
    for name in names:
        key, table = TABLES[name]
        pattern = re.compile(
            rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", flags=re.DOTALL
        )
        lines = "\n".join(table(results[key]))
        text = pattern.sub(
            lambda m, lines=lines: f"{m.group(1)}{lines}\n{m.group(2)}",  # type: ignore[misc]
            text,
        )
    return text


def where() -> dict[str, Path]:
    """The document holding each table (exactly one each)."""
    found: dict[str, Path] = {}
    for path in documents():
        text = path.read_text()
        for name in TABLES:
            if f"<!-- bench:{name} -->" in text:
                if name in found:
                    raise SystemExit(f"<!-- bench:{name} --> is in {found[name]} and {path}")
                found[name] = path
    missing = sorted(set(TABLES) - set(found))
    if missing:
        raise SystemExit(f"no <!-- bench:NAME --> section for {missing} in the docs")
    return found


def main() -> int:
    results = json.loads(RESULTS.read_text())
    by_document: dict[Path, list[str]] = {}
    for name, path in where().items():
        by_document.setdefault(path, []).append(name)
    for path, names in by_document.items():
        path.write_text(render(path.read_text(), results, names))
        print(f"{path.relative_to(ROOT)}: {', '.join(names)} updated from {RESULTS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
