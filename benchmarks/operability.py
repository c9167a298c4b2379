"""What encryption and logs/metrics cost per turn, on a warm container.

1. A turn through the session core on DynamoDB Local (an existing conversation, one of 50 per
   way taken in turn), four ways interleaved: plain; with the
   telemetry observer (one JSON line, the metrics, and the EMF blob written at the end of the
   invocation, as ``Entry`` does; output to /dev/null); with envelope encryption (a local
   master key: a warm container's data key is cached, so the work is AES-GCM; KMS is only
   asked when a container starts or meets another container's data key); and both. States of
   200 B and 3 KB.
2. The pieces alone, in microseconds: sealing and opening a state; one observer call plus
   the flush of its metrics.
3. What sealing adds to a stored state, in bytes (the key id and wrapped data key of a local
   master key; a KMS key's ARN and wrapped key are longer, about 260 bytes together).
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import sys
import time
import uuid
from typing import Any

from handlers.telemetry import Telemetry
from sessions import ConversationKey, Sessions, codec
from sessions.dynamodb import DynamoDBStore, create_table
from sessions.encryption import Envelope, LocalKeyring

SIZES = {"200 B": 150, "3 KB": 3000}
WAYS = ("plain", "logs+metrics", "encryption", "both")
CONVERSATIONS = 50


WORDS = "buy milk call mum water the plants book dentist pay rent renew passport pick up"
WORDS += " parcel send invoice fix bike email landlord order printer ink plan trip"
WORDS_LIST = WORDS.split()


def _state(pad: int) -> dict[str, Any]:
    """Items of words in random order: compresses about as a real to-do list does."""
    rand = random.Random(pad)
    items, size = [], 0
    while size < pad:
        item = " ".join(rand.choice(WORDS_LIST) for _ in range(rand.randint(2, 6)))
        items.append({"text": item, "done": rand.random() < 0.3})
        size += len(item) + 25
    return {"items": items}


def _sessions(store: DynamoDBStore, way: str, telemetry: Telemetry) -> Sessions:
    encryption = Envelope(LocalKeyring(os.urandom(32))) if way in ("encryption", "both") else None
    observer = telemetry if way in ("logs+metrics", "both") else None
    return Sessions(store, encryption=encryption, observer=observer)


def _per_turn(client: Any, table: str, rounds: int) -> dict[str, Any]:
    store = DynamoDBStore(table, client=client)
    out: dict[str, Any] = {}
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        telemetry = Telemetry()  # writes to whatever stdout is: /dev/null here
        for size, pad in SIZES.items():
            base = _state(pad)

            def turn(state: Any, event: Any, base: dict[str, Any] = base) -> Any:
                return {**base, "n": state.get("n", 0) + 1}, ["ok"], None

            runners = {way: _sessions(store, way, telemetry) for way in WAYS}
            # Each way round-robins over its own conversations, a few turns each (a
            # conversation that takes hundreds of turns in a minute is another benchmark's).
            keys = {
                way: [
                    ConversationKey.slack(team="TBENCH", channel="D1", user=f"U{n}{c}{pad}")
                    for c in range(CONVERSATIONS)
                ]
                for n, way in enumerate(WAYS)
            }
            for way in WAYS:  # warm: the conversations exist, the data key is made
                for key in keys[way]:
                    runners[way].run(key, uuid.uuid4().hex, turn, None, event_time=time.time())
            samples: dict[str, list[float]] = {way: [] for way in WAYS}
            for i in range(rounds):
                for way in WAYS:
                    key = keys[way][i % CONVERSATIONS]
                    started = time.perf_counter()
                    runners[way].run(key, uuid.uuid4().hex, turn, None, event_time=time.time())
                    if way in ("logs+metrics", "both"):
                        telemetry.end()  # the EMF blob, once per invocation
                    samples[way].append(time.perf_counter() - started)
            plain = statistics.median(samples["plain"])
            out[size] = {
                way: {
                    "median_ms": round(statistics.median(s) * 1000, 3),
                    "vs_plain": round(statistics.median(s) / plain, 3),
                }
                for way, s in samples.items()
            }
    return out


def _micro(repeats: int) -> dict[str, Any]:
    from sessions.runner import TurnReport

    envelope = Envelope(LocalKeyring(os.urandom(32)))
    out: dict[str, Any] = {}
    for size, pad in SIZES.items():
        blob = codec.encode(_state(pad))
        sealed = envelope.seal(blob, aad=b"pk\0sk\0state")
        started = time.perf_counter()
        for _ in range(repeats):
            envelope.open(envelope.seal(blob, aad=b"pk\0sk\0state"), aad=b"pk\0sk\0state")
        out[f"seal + open, {size} state (us)"] = round(
            (time.perf_counter() - started) / repeats * 1e6, 1
        )
        out[f"sealed size, {size} state (bytes)"] = f"{len(blob)} -> {len(sealed)}"
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        telemetry = Telemetry()  # writes to whatever stdout is: /dev/null here
        report = TurnReport(
            key=ConversationKey.slack(team="T1", channel="D1", user="U1"),
            idempotency_key="event:Ev1",
            outcome="applied",
            attempts=1,
            turn_ms=5.0,
            store_ms=4.0,
            store_calls=2,
            sent=True,
        )
        started = time.perf_counter()
        for _ in range(repeats):
            telemetry(report)
            telemetry.end()
        out["log line + metrics + EMF flush, per turn (us)"] = round(
            (time.perf_counter() - started) / repeats * 1e6, 1
        )
    return out


def _key_requests(client: Any, table: str) -> dict[str, Any]:
    """Key-service requests (KMS on AWS) and DynamoDB requests, cold and warm: the data key
    is made once per container and other containers' data keys are unwrapped once each."""
    sent: list[int] = []

    def count(**_: Any) -> None:
        sent.append(1)

    client.meta.events.register("before-send.dynamodb", count)
    store = DynamoDBStore(table, client=client)
    keyring = LocalKeyring(os.urandom(32))
    key = ConversationKey.slack(team="TKEYS", channel="D1", user="U1")

    def turn(state: Any, event: Any) -> Any:
        return {"n": state.get("n", 0) + 1}, [], None

    Sessions(store).run(
        key, uuid.uuid4().hex, turn, None, event_time=time.time()
    )  # the conversation exists
    out: dict[str, Any] = {}
    cold = Envelope(keyring)
    sessions = Sessions(store, encryption=cold)
    sent.clear()
    sessions.run(key, uuid.uuid4().hex, turn, None, event_time=time.time())
    out["a cold container's first turn"] = (cold.key_requests, len(sent))
    sent.clear()
    for _ in range(100):
        sessions.run(key, uuid.uuid4().hex, turn, None, event_time=time.time())
    out["its next 100 turns"] = (cold.key_requests - 1, len(sent))
    other = Envelope(keyring)  # another container meets the first one's data key
    sent.clear()
    Sessions(store, encryption=other).run(key, uuid.uuid4().hex, turn, None, event_time=time.time())
    out["another container's first turn"] = (other.key_requests, len(sent))
    client.meta.events.unregister("before-send.dynamodb", count)
    return {name: {"key_requests": k, "dynamodb_requests": d} for name, (k, d) in out.items()}


def run(client: Any, *, rounds: int = 300, repeats: int = 2000) -> dict[str, Any]:
    table = "bench-operability"
    create_table(client, table)
    return {
        "per_turn": _per_turn(client, table, rounds),
        "micro": _micro(repeats),
        "key_requests": _key_requests(client, table),
    }


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| turn on DynamoDB Local | " + " | ".join(WAYS) + " |",
        "|---|" + "---|" * len(WAYS),
    ]
    for size, ways in results["per_turn"].items():
        cells = [f"{ways[w]['median_ms']} ms (x{ways[w]['vs_plain']:.2f})" for w in WAYS]
        lines.append(f"| {size} state, median | " + " | ".join(cells) + " |")
    lines += ["", "| the pieces alone | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in results["micro"].items()]
    lines += [
        "",
        "| encryption on | key-service (KMS) requests | DynamoDB requests |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['key_requests']} | {r['dynamodb_requests']} |"
        for name, r in results["key_requests"].items()
    ]
    return lines


if __name__ == "__main__":
    from sessions.dynamodb import make_client
    from tests import dynamodb_local

    with dynamodb_local.running() as server:
        result = run(make_client(endpoint_url=server.endpoint), rounds=50, repeats=200)
    print("\n".join(table(result)), file=sys.stderr)
