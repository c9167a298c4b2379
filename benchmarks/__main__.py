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

from benchmarks import event_records  # noqa: E402
from sessions.dynamodb import make_client  # noqa: E402
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


def main() -> int:
    with dynamodb_local.running() as server:
        client = make_client(endpoint_url=server.endpoint)
        records = event_records.run(client)

    print("\nEvent records: per turn, on DynamoDB Local (consumed capacity as reported)\n")
    print(f"| {'scenario':34} | layout  | requests | read units | write units |")
    print(f"|{'-' * 36}|---------|----------|------------|-------------|")
    for row in records:
        for layout in ("sibling", "inline"):
            m = row[layout]
            print(
                f"| {row['scenario']:34} | {layout:7} | {m['requests_per_turn']:8.2f} "
                f"| {m['read_units_per_turn']:10.2f} | {m['write_units_per_turn']:11.2f} |"
            )
    RESULTS.write_text(json.dumps({"machine": machine(), "event_records": records}, indent=2))
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
