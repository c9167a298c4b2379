"""Cold start: fresh interpreters importing each handler, and handling a first event, against
``import boto3`` alone. Reports milliseconds (median of several fresh processes), the modules
loaded, and whether slack_bolt and slack_sdk came along (the Messenger path loads neither;
the Slack edge does not use Bolt, only slack_sdk's clients).

"First event" is what a Lambda cold start does before answering: the module import (the
edge is built at import inside Lambda), then one really signed request through the handler,
two DynamoDB requests against DynamoDB Local, and for Messenger the Send API call to a local
fake."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import fake_slack

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys, time
t0 = time.perf_counter()
before = set(sys.modules)
{body}
elapsed = time.perf_counter() - t0
loaded = set(sys.modules) - before
print(json.dumps({{
    "ms": elapsed * 1000,
    "modules": len(loaded),
    "slack_bolt": any(m.split(".")[0] == "slack_bolt" for m in loaded),
    "slack_sdk": any(m.split(".")[0] == "slack_sdk" for m in loaded),
    "boto3": "boto3" in loaded,
}}))
"""

CASES = {
    "import boto3": "import boto3",
    "import handlers.messenger": "import handlers.messenger",
    "import handlers.slack": "import handlers.slack",
    "handlers.messenger: import + first message": (
        "import handlers.messenger\n"
        "r = handlers.messenger.handler(json.loads(sys.argv[1]), None)\n"
        "assert r['statusCode'] == 200, r"
    ),
    "handlers.slack: import + first slash command": (
        "import handlers.slack\n"
        "r = handlers.slack.handler(json.loads(sys.argv[1]), None)\n"
        "assert r['statusCode'] == 200, r"
    ),
}
#: The Messenger first message again, with logs/metrics off, and with encryption on (a local
#: master key: the AES-GCM side; KMS's GenerateDataKey round trip is not measurable here):
#: the cold cost of each, against the case above (telemetry on, as inside Lambda).
VARIANTS = {
    "import handlers.messenger, logs/metrics off": {"SESSIONS_TELEMETRY": "off"},
    "handlers.messenger: first message, logs/metrics off": {"SESSIONS_TELEMETRY": "off"},
    "handlers.messenger: first message, encryption on": {
        "SESSIONS_ENCRYPTION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    },
}


def _probe(code: str, env: dict[str, str], arg: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(body=code), arg],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"cold-start probe failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(endpoint: str, table: str, *, repeats: int = 11) -> dict[str, Any]:
    with fake_slack() as fake:
        env = {
            **os.environ,
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_LAMBDA_FUNCTION_NAME": "bench-cold-start",  # build at import, as in Lambda
            **fake.edge_env(),
            "SESSIONS_TABLE": table,
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        }
        results: dict[str, Any] = {}
        first_message = CASES["handlers.messenger: import + first message"]
        cases = {name: (code, {}) for name, code in CASES.items()} | {
            name: (CASES["import handlers.messenger"] if name.startswith("import") else
                   first_message, extra)
            for name, extra in VARIANTS.items()
        }  # fmt: skip
        for n, (name, (code, extra)) in enumerate(cases.items()):
            runs = []
            for i in range(repeats):
                if "messenger" in name:
                    psid = f"3{n:02d}00{i:02d}"
                    event = mr.post(mr.single(mr.text("add cold", psid=psid)))
                else:
                    event = sr.slash("add cold", user=f"UCOLD{i:02d}")
                runs.append(_probe(code, {**env, **extra}, json.dumps(event)))
            results[name] = {
                "median_ms": round(statistics.median(r["ms"] for r in runs), 1),
                "min_ms": round(min(r["ms"] for r in runs), 1),
                "modules": runs[0]["modules"],
                "slack_bolt_loaded": runs[0]["slack_bolt"],
                "slack_sdk_loaded": runs[0]["slack_sdk"],
                "boto3_loaded": runs[0]["boto3"],
            }
    return results


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| fresh interpreter | median ms | min ms | x import boto3 | modules loaded "
        "| slack_bolt | slack_sdk | boto3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    boto3 = results["import boto3"]["median_ms"]
    for name, r in results.items():
        ratio = f"{r['median_ms'] / boto3:.2f}" if name.startswith("import ") else ""
        lines.append(
            f"| {name} | {r['median_ms']} | {r['min_ms']} | {ratio} | {r['modules']} "
            f"| {_yes(r['slack_bolt_loaded'])} | {_yes(r.get('slack_sdk_loaded', False))} "
            f"| {_yes(r['boto3_loaded'])} |"
        )
    return lines
