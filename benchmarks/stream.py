"""What a streamed answer costs, on DynamoDB Local, through the real Slack edge and
``examples/assistant.py`` answering from the fake streaming model (``handlers.tools.
fake_model``, a word every :data:`DELAY` seconds) into the fake Slack: the question's turn,
the streamed answer (the effect's claims, one record per chunk appended, the stop, the
follow-up turn), per event and per chunk appended (the difference between two buffer sizes,
divided by the difference in appends), and the time from the model's own first chunk to
Slack's first ``appendStream``. DynamoDB requests counted with botocore's hooks, billed units
by AWS's sizing rules (``benchmarks.billing``).

    python -m benchmarks.stream   # DynamoDB Local started for it; these rows only
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections import Counter
from typing import Any

import handlers.slack
from benchmarks import installs
from benchmarks.capacity import Meter
from examples.assistant import Assistant
from handlers.pipeline.streams import BUFFER_CHARS, StreamSettings
from handlers.settings import from_env
from handlers.tools.fake_model import Served
from sessions import Sessions
from sessions.dynamodb import DynamoDBStore, create_table, make_client
from tests import slack_requests as sr
from tests.fakes import FakeSlack, QueueDeferrer, fake_slack

USERS = 10
#: Seconds between two words of the fake model.
DELAY = 0.02
#: A small buffer, for the marginal cost of one more chunk appended.
SMALL_BUFFER = 16


def _slack_calls(fake: FakeSlack, since: int) -> Counter[str]:
    with fake.lock:
        calls = fake.calls[since:]
    return Counter(c.path.rsplit("/", 1)[-1] for c in calls if c.path.startswith("/api/"))


def run(endpoint: str) -> dict[str, Any]:
    client = make_client(endpoint_url=endpoint)
    probe = make_client(endpoint_url=endpoint)
    table = f"bench-stream-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    sessions = Sessions(DynamoDBStore(table, client=client))
    firsts: list[float] = []  # when the model's first chunk of text of each answer left
    model = Served(
        delay=DELAY, on_chunk=lambda n: firsts.append(time.monotonic()) if n == 1 else None
    )
    rows: list[dict[str, Any]] = []
    latency: dict[str, Any] = {}
    try:
        with fake_slack() as fake:
            deferrer = QueueDeferrer()
            slack = handlers.slack.build(
                from_env({**os.environ, **fake.edge_env()}),
                sessions=sessions,
                bot=Assistant(url=model.url, key=""),
                deferrer=deferrer,
            )
            users = [f"U{n:04d}" for n in range(USERS)]

            def ask(user: str, text: str) -> None:
                body = sr.dm_body(
                    text, user=user, channel=f"D{user[1:]}", thread_ts=f"1700000000.{user[1:]}"
                )
                assert slack.handle(sr.json_event(body))["statusCode"] == 200

            for user in users:  # each thread exists: what follows is the usual question
                ask(user, "hello")
            deferrer.drain(slack.run_deferred)
            measured: dict[int, dict[str, Any]] = {}
            with Meter(client, probe=probe) as meter:
                for buffer in (BUFFER_CHARS, SMALL_BUFFER):
                    slack.pipeline.streaming = StreamSettings(buffer_chars=buffer)
                    for user in users:
                        ask(user, f"what is a stream? ({buffer})")
                    rows.append(installs.row("the question's turn (webhook)", meter, USERS))
                    since = len(fake.calls)
                    firsts.clear()
                    started = len(fake.stream_calls())
                    deferrer.drain(slack.run_deferred)
                    answer = installs.row(
                        f"the streamed answer, buffer {buffer} chars (claims, records, stop, "
                        "follow-up turn)",
                        meter,
                        USERS,
                    )
                    calls = _slack_calls(fake, since)
                    answer["slack"] = {k: round(v / USERS, 2) for k, v in sorted(calls.items())}
                    answer["appends"] = calls["chat.appendStream"] / USERS
                    rows.append(answer)
                    measured[buffer] = answer
                    if buffer == BUFFER_CHARS:
                        latency = _first_chunk(fake, started, firsts)
            big, small = measured[BUFFER_CHARS], measured[SMALL_BUFFER]
            more = small["appends"] - big["appends"]
            rows.append({
                "what": "one more chunk appended (marginal)",
                "requests": round((small["requests"] - big["requests"]) / more, 2),
                "by_operation": {},
                "rcu": round((small["rcu"] - big["rcu"]) / more, 2),
                "wcu": round((small["wcu"] - big["wcu"]) / more, 2),
                "slack": {"chat.appendStream": 1},
            })  # fmt: skip
    finally:
        model.close()
    return {"rows": rows, "first_chunk": latency, "delay": DELAY}


def _first_chunk(fake: FakeSlack, started: int, firsts: list[float]) -> dict[str, Any]:
    """Per answer: from the model's first chunk of text to Slack's first append of it."""
    appends: dict[str, float] = {}
    for call in fake.stream_calls()[started:]:
        if call.path.endswith("appendStream"):
            appends.setdefault(str(call.body["ts"]), call.at)
    gaps = [(a - f) * 1000 for f, a in zip(firsts, appends.values(), strict=False)]
    return {
        "answers": len(gaps),
        "median_ms": round(statistics.median(gaps), 1),
        "max_ms": round(max(gaps), 1),
    }


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| what (per event) | DynamoDB requests | billed RCU | billed WCU | Slack calls |",
        "|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        ops = ", ".join(f"{v:g} {k}" for k, v in r["by_operation"].items())
        slack = ", ".join(f"{v:g} {k.removeprefix('chat.')}" for k, v in r.get("slack", {}).items())
        lines.append(
            f"| {r['what']} | {r['requests']}{f' ({ops})' if ops else ''} | {r['rcu']} | "
            f"{r['wcu']} | {slack or '-'} |"
        )
    first = results["first_chunk"]
    lines += [
        "",
        f"Time to first chunk: Slack's first `appendStream` came {first['median_ms']} ms "
        f"(median; max {first['max_ms']} ms, {first['answers']} answers) after the fake "
        f"model's own first chunk of text (a word every {results['delay'] * 1000:g} ms).",
    ]
    return lines


def main() -> None:
    """These rows alone: DynamoDB Local started for them, ``results.json``'s ``stream`` and
    the docs' table updated (the other rows as the last ``make bench`` left them)."""
    import json

    from benchmarks import readme
    from tests import dynamodb_local

    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        os.environ.setdefault(name, value)
    began = time.perf_counter()
    with dynamodb_local.running() as server:
        results = run(server.endpoint)
    print("\n".join(table(results)))
    print(f"({time.perf_counter() - began:.1f} s)")
    saved = json.loads(readme.RESULTS.read_text()) if readme.RESULTS.exists() else {}
    saved["stream"] = results
    readme.RESULTS.write_text(json.dumps(saved, indent=2, ensure_ascii=False))
    readme.main()


if __name__ == "__main__":
    main()
