"""Cold start as deployed: the packaged zip's contents as Lambda loads them, against the
hand-written minimal handler (``benchmarks.minimal_lambda``) in the same run.

Each probe is a fresh interpreter of the runtime's Python (3.12, ``scripts/lambda_bytecode``
finds it) with ``AWS_LAMBDA_FUNCTION_NAME`` set (the edge is built at import, as in Lambda),
``-B`` (no bytecode written) and nothing on ``sys.path`` but the stdlib, the unpacked code
(read-only, with whatever bytecode it carries) and the runtime's boto3 (installed once with
the runtime's Python into ``.cache/lambda-runtime``, compiled, as Lambda's own is). It times
the handler module's import, then its first event: a really signed request through the
handler, to DynamoDB Local (a new conversation each time) and, for a DM or a Messenger
message, the reply to the local fake Slack/Graph API.

Ours is the zip ``make package`` built (``.serverless/chat-sessions.zip``); the minimal
handler's code is its own file alone. The probes run interleaved, ours then minimal, round
by round, so both see the same machine load: the ratios are what to read; the absolute
times depend on how busy the machine is.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scripts.lambda_bytecode import COMPILE, RUNTIME, TASK_ROOT, runtime_python
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import fake_slack

ROOT = Path(__file__).resolve().parent.parent
ZIP = ROOT / ".serverless" / "chat-sessions.zip"
RUNTIME_SITE = ROOT / ".cache" / "lambda-runtime" / f"python{RUNTIME}"

PROBE = """
import importlib, json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
module, _, attribute = sys.argv[3].partition(".handler")
t0 = time.perf_counter()
handler = importlib.import_module(module).handler
t1 = time.perf_counter()
answer = handler(json.loads(sys.argv[4]), None)
t2 = time.perf_counter()
assert answer["statusCode"] == 200, answer
compiled = [m.__name__ for m in list(sys.modules.values())
            if (getattr(m, "__file__", "") or "").startswith(sys.argv[1])
            and not __import__("os").path.isfile(getattr(m, "__cached__", "") or "")]
print(json.dumps({"import_ms": (t1 - t0) * 1000, "first_ms": (t2 - t0) * 1000,
                  "modules": len(sys.modules), "compiled": len(compiled)}))
"""

#: name -> (ours or minimal, handler, request builder for probe i)
CASES: dict[str, tuple[str, str, Callable[[int], dict[str, Any]]]] = {
    "slack slash command": (
        "ours",
        "handlers.slack.handler",
        lambda i: sr.slash("add cold", user=f"UCZ{i:04d}"),
    ),
    "slack DM": (
        "ours",
        "handlers.slack.handler",
        lambda i: sr.json_event(sr.dm_body("add cold", channel=f"DCZ{i:04d}", user=f"UDZ{i:04d}")),
    ),
    "messenger message": (
        "ours",
        "handlers.messenger.handler",
        lambda i: mr.post(mr.single(mr.text("add cold", psid=f"77{i:05d}"))),
    ),
}


def runtime_site(python: str) -> Path:
    """The runtime's boto3 (our venv's version) for ``python``, installed once."""
    import boto3

    marker = RUNTIME_SITE / f".boto3-{boto3.__version__}"
    if not marker.exists():
        shutil.rmtree(RUNTIME_SITE, ignore_errors=True)
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(RUNTIME_SITE), f"boto3=={boto3.__version__}"],
            check=True,
        )  # fmt: skip
        marker.touch()
    return RUNTIME_SITE


@contextmanager
def read_only_tree(fill: Callable[[Path], None]) -> Iterator[Path]:
    """A temporary directory filled by ``fill``, then made read-only, as Lambda's /var/task."""
    with tempfile.TemporaryDirectory(prefix="cold-") as tmp:
        root = Path(tmp)
        fill(root)
        paths = [root, *root.rglob("*")]
        for path in paths:
            path.chmod(path.stat().st_mode & ~0o222)
        try:
            yield root
        finally:
            for path in paths:
                path.chmod(path.stat().st_mode | 0o200)


def _unzip(zip_path: Path) -> Callable[[Path], None]:
    def fill(root: Path) -> None:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(root)

    return fill


def _minimal_code(python: str) -> Callable[[Path], None]:
    """The minimal handler's files, compiled as ours are (the floor at its best)."""

    def fill(root: Path) -> None:
        (root / "benchmarks").mkdir()
        for name in ("__init__.py", "minimal.py", "minimal_lambda.py"):
            shutil.copy(ROOT / "benchmarks" / name, root / "benchmarks" / name)
        subprocess.run([python, "-I", "-c", COMPILE, str(root), TASK_ROOT], check=True)

    return fill


def _probe(
    python: str, code: Path, site: Path, handler: str, event: Any, env: dict[str, str]
) -> Any:
    proc = subprocess.run(
        [python, "-I", "-S", "-B", "-c", PROBE, str(code), str(site), handler, json.dumps(event)],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"cold-start probe {handler} failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(endpoint: str, table: str, *, zip_path: Path = ZIP, repeats: int = 11) -> dict[str, Any]:
    if not zip_path.is_file():
        raise SystemExit(f"no {zip_path}: run make package first")
    python = runtime_python()
    site = runtime_site(python)
    with (
        fake_slack() as fake,
        read_only_tree(_unzip(zip_path)) as ours,
        read_only_tree(_minimal_code(python)) as minimal,
    ):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_LAMBDA_FUNCTION_NAME": "bench-cold-start",
            "PYTHONDONTWRITEBYTECODE": "1",
            **fake.edge_env(),
            "SESSIONS_TABLE": table,
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        }
        runs: dict[str, list[Any]] = {}
        for i in range(repeats):
            for n, (name, (_, handler, request)) in enumerate(CASES.items()):
                k = i * len(CASES) + n
                runs.setdefault(name, []).append(
                    _probe(python, ours, site, handler, request(k), env)
                )
                runs.setdefault(f"minimal handler: {name}", []).append(
                    _probe(python, minimal, site, "benchmarks.minimal_lambda.handler",
                           request(10_000 + k), env)
                )  # fmt: skip
    results: dict[str, Any] = {"python": RUNTIME, "repeats": repeats}
    for name, samples in runs.items():
        results[name] = {
            "import_ms": round(statistics.median(s["import_ms"] for s in samples), 1),
            "first_ms": round(statistics.median(s["first_ms"] for s in samples), 1),
            "modules": samples[0]["modules"],
            "compiled_from_source": samples[0]["compiled"],
        }
    for name in CASES:
        mine, theirs = runs[name], runs[f"minimal handler: {name}"]
        for what in ("import_ms", "first_ms"):
            ratio = statistics.median(s[what] for s in mine) / statistics.median(
                s[what] for s in theirs
            )
            # The same ratio round by round (each pair ran back to back): robust to load.
            paired = statistics.median(a[what] / b[what] for a, b in zip(mine, theirs, strict=True))
            results[name][f"x_minimal_{what[:-3]}"] = round(ratio, 2)
            results[name][f"x_minimal_{what[:-3]}_paired"] = round(paired, 2)
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        f"| fresh Python {results['python']}, code from the zip | import ms | import + first "
        "event ms | x minimal handler (import) | x minimal handler (import + first event) "
        "| modules | compiled from source |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        ratios = ["", ""]
        if "x_minimal_import" in r:
            ratios = [
                f"{r['x_minimal_import']:.2f} ({r['x_minimal_import_paired']:.2f})",
                f"{r['x_minimal_first']:.2f} ({r['x_minimal_first_paired']:.2f})",
            ]
        lines.append(
            f"| {name} | {r['import_ms']} | {r['first_ms']} | {ratios[0]} | {ratios[1]} "
            f"| {r['modules']} | {r['compiled_from_source']} |"
        )
    return lines


def main() -> int:
    """``python -m benchmarks.cold_packaged [ZIP]``: this bench alone (DynamoDB Local started
    for it), its table printed and its rows written into ``benchmarks/results.json``."""
    from benchmarks.__main__ import RESULTS
    from sessions.dynamodb import create_table, make_client
    from tests import dynamodb_local

    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    zip_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ZIP
    with dynamodb_local.running() as server:
        create_table(make_client(endpoint_url=server.endpoint), "bench-cold-packaged")
        results = run(server.endpoint, "bench-cold-packaged", zip_path=zip_path)
    for line in table(results):
        print(line)
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    stored["cold_packaged"] = results
    RESULTS.write_text(json.dumps(stored, indent=2, ensure_ascii=False))
    from benchmarks import readme

    path = readme.where()["cold-packaged"]
    path.write_text(readme.render(path.read_text(), stored, ["cold-packaged"]))
    print(f"written to {RESULTS} and {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
