"""What a WhatsApp turn costs: DynamoDB requests and billed units through the real WhatsApp
edge (event records kept 7 days and an hour, as Meta redelivers for 7 days), and the edge's
latency against a hand-written minimal WhatsApp handler and the bare requests, interleaved.

Requests and units are metered on the edge's own client (botocore's hooks, AWS's sizing
rules: ``benchmarks.capacity``). Scenarios, each a signed webhook through
``WhatsAppEdge.handle``: a conversation's first message, a new message, its redelivery (a
duplicate), its redelivery six days later (still a duplicate: the 7-day records), a status
(no turn), and busy conversations, per event amortised: 200 messages a minute apart, and 240
an hour apart over 10 days, with 7-day records and, for comparison, with the other platforms'
1-day records (the longer records stay inline longer, then move out to pages).

The minimal handler (:class:`MinimalWhatsApp`) verifies the signature, parses the webhook,
does one ``GetItem``, the turn, one conditional ``PutItem`` and the Cloud API call: no
idempotency records, no dead letters, no telemetry, as ``benchmarks.minimal`` for the others.

Run alone: ``python -m benchmarks.whatsapp`` (starts DynamoDB Local); ``make bench`` runs it
with the rest.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import statistics
import time
import uuid
from typing import Any

from benchmarks.capacity import Meter
from benchmarks.minimal import Minimal, _headers, _raw
from handlers import whatsapp as whatsapp_edge
from handlers.settings import from_env
from handlers.whatsapp.config import RECORD_TTL, WhatsAppSettings
from sessions import Sessions
from sessions.dynamodb import DynamoDBStore, create_table
from tests import whatsapp_requests as wr
from tests.fakes import fake_slack

DAY = 86_400


class MinimalWhatsApp(Minimal):
    """``benchmarks.minimal``'s handlers, and the same for a WhatsApp webhook."""

    whatsapp_url = ""

    def whatsapp(self, event: dict[str, Any]) -> dict[str, Any]:
        body = _raw(event)
        header = _headers(event).get("x-hub-signature-256", "")
        expected = "sha256=" + hmac.new(self.app_secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, header):
            return {"statusCode": 403}
        for entry in json.loads(body)["entry"]:
            for change in entry["changes"]:
                value = change["value"]
                number = value["metadata"]["phone_number_id"]
                for message in value.get("messages", []):
                    pk = f"whatsapp#{number}#{message['from']}"
                    text = self._turn(pk, number, message.get("text", {}).get("body", ""))
                    self.http.post(
                        f"{self.whatsapp_url}/{number}/messages",
                        json={
                            "messaging_product": "whatsapp",
                            "to": message["from"],
                            "type": "text",
                            "text": {"body": text},
                        },
                        headers={"authorization": f"Bearer {wr.TOKEN}"},
                        timeout=2,
                    ).raise_for_status()
        return {"statusCode": 200, "body": "EVENT_RECEIVED"}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _measure(meter: Meter, fn: Any, events: int = 1) -> dict[str, Any]:
    meter.reset()
    fn()
    assert meter.billing is not None
    return {
        "requests": round(sum(meter.requests.values()) / events, 2),
        "billed_read_units": round(meter.billing.read / events, 2),
        "billed_write_units": round(meter.billing.write / events, 2),
        "operations": dict(meter.requests),
    }


def _edge(client: Any, table: str, fake: Any, clock: Clock, ttl: int) -> Any:
    settings = from_env(fake.edge_env())
    config = WhatsAppSettings(app_secret=wr.APP_SECRET, verify_token=wr.VERIFY_TOKEN,
                              token=wr.TOKEN, api_url=fake.graph_url, event_ttl=ttl)  # fmt: skip
    sessions = Sessions(DynamoDBStore(table, client=client), clock=clock)
    return whatsapp_edge.build(settings, sessions=sessions, whatsapp=config, workers=1)


class Chat:
    """Signed messages to one edge, on a clock the benchmark moves (a conversation's rhythm
    played in seconds)."""

    def __init__(self, edge: Any, clock: Clock) -> None:
        self.edge, self.clock = edge, clock

    def say(self, text: str, user: str, *, at: float | None = None,
            mid: str | None = None) -> None:  # fmt: skip
        when = self.clock.now if at is None else at
        self.clock.now = max(self.clock.now, when + 0.05)
        body = wr.single(wr.text(text, user=user, mid=mid, timestamp=str(int(when))))
        result = self.edge.handle(wr.post(body))
        assert result["statusCode"] == 200, result

    def conversation(self, user: str, events: int, gap: int) -> None:
        start = time.time() - events * gap - 600
        for i in range(events):
            self.clock.now = start + gap * i
            self.say(f"add item {i % 5}", user, at=start + gap * i)


def _turns(meter: Meter, chat: Chat) -> dict[str, Any]:
    out: dict[str, Any] = {}
    user = str(16_500_000_000 + int(uuid.uuid4().int % 10**8))
    out["first message"] = _measure(meter, lambda: chat.say("add milk", user))
    mid = wr.wamid()
    out["new message"] = _measure(meter, lambda: chat.say("add tea", user, mid=mid))
    sent_at = chat.clock.now - 1
    out["redelivery (duplicate)"] = _measure(
        meter, lambda: chat.say("add tea", user, mid=mid, at=sent_at)
    )

    def late() -> None:
        chat.clock.now += 6 * DAY
        chat.say("add tea", user, mid=mid, at=sent_at)

    out["redelivery 6 days later (duplicate)"] = _measure(meter, late)
    statuses = wr.post(wr.webhook(wr.value(statuses=(wr.status(wr.wamid(), "read"),))))
    out["a status (no turn)"] = _measure(meter, lambda: chat.edge.handle(statuses))
    return out


def costs(client: Any, probe: Any) -> dict[str, Any]:
    """Requests and billed units per WhatsApp turn."""
    table = f"bench-wa-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    out: dict[str, Any] = {}
    with fake_slack() as fake, Meter(client, probe=probe) as meter:
        for label, ttl in (("7-day records", RECORD_TTL), ("1-day records", DAY)):
            clock = Clock()
            chat = Chat(_edge(client, table, fake, clock, ttl), clock)
            if ttl == RECORD_TTL:
                out.update(_turns(meter, chat))
            for events, gap, rhythm in ((200, 60, "a minute"), (240, 3600, "an hour")):
                user = str(16_600_000_000 + int(uuid.uuid4().int % 10**8))
                name = f"busy: {events} messages, one {rhythm} apart, {label} (per event)"
                out[name] = _measure(
                    meter, functools.partial(chat.conversation, user, events, gap), events
                )
        assert len(fake.whatsapp_sends()) > 0
    return out


def latency(client: Any, *, rounds: int = 300, warmup: int = 20) -> dict[str, Any]:
    """The WhatsApp edge vs the minimal handler vs a bare GetItem + PutItem, interleaved."""
    table = f"bench-wa-lat-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    with fake_slack() as fake:
        settings = from_env(fake.edge_env())
        config = WhatsAppSettings(app_secret=wr.APP_SECRET, verify_token=wr.VERIFY_TOKEN,
                                  token=wr.TOKEN, api_url=fake.graph_url)  # fmt: skip
        edge = whatsapp_edge.build(settings, sessions=Sessions(DynamoDBStore(table, client=client)),
                                   whatsapp=config, workers=1)  # fmt: skip
        minimal = MinimalWhatsApp(
            client, table, slack_secret=str(settings.slack_signing_secret),
            app_secret=wr.APP_SECRET, slack_api_url=settings.slack_api_url,
            graph_url=fake.graph_url,
        )  # fmt: skip
        minimal.whatsapp_url = fake.graph_url
        for text in ("add milk", "add bread", "add tea"):
            assert (
                edge.handle(wr.post(wr.single(wr.text(text, user="4440001"))))["statusCode"] == 200
            )
            minimal.whatsapp(wr.post(wr.single(wr.text(text, user="4440002"))))
        item = client.get_item(
            TableName=table,
            Key={"pk": {"S": f"whatsapp#{wr.NUMBER}#4440001"}, "sk": {"S": f"todo:{wr.NUMBER}"}},
            ConsistentRead=True,
        )["Item"]
        bare_key = {"pk": {"S": "bench#bare"}, "sk": {"S": "C0BENCH"}}
        bare_item = {**item, **bare_key}
        samples: dict[str, list[float]] = {
            "whatsapp message (+ Cloud API)": [],
            "minimal: whatsapp message": [],
            "bare GetItem + PutItem": [],
        }
        for i in range(warmup + rounds):
            ours = wr.post(wr.single(wr.text("list", user="4440001")))
            theirs = wr.post(wr.single(wr.text("list", user="4440002")))
            timed = []
            t = time.perf_counter()
            assert edge.handle(ours)["statusCode"] == 200
            timed.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert minimal.whatsapp(theirs)["statusCode"] == 200
            timed.append(time.perf_counter() - t)
            t = time.perf_counter()
            client.get_item(TableName=table, Key=bare_key, ConsistentRead=True)
            client.put_item(TableName=table, Item=bare_item)
            timed.append(time.perf_counter() - t)
            if i >= warmup:
                for name, value in zip(samples, timed, strict=True):
                    samples[name].append(value)
    floor = statistics.median(samples["bare GetItem + PutItem"])
    out: dict[str, Any] = {}
    for name, values in samples.items():
        ordered = sorted(values)
        out[name] = {
            "median_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[round(0.99 * (len(ordered) - 1))] * 1000, 2),
            "ratio": round(statistics.median(ordered) / floor, 2),
        }
    mine = statistics.median(samples["whatsapp message (+ Cloud API)"])
    out["whatsapp message (+ Cloud API)"]["x_minimal"] = round(
        mine / statistics.median(samples["minimal: whatsapp message"]), 2
    )
    return out


def run(client: Any, probe: Any) -> dict[str, Any]:
    return {"costs": costs(client, probe), "latency": latency(client)}


def table(results: dict[str, Any]) -> list[str]:
    lines = ["| WhatsApp turn | requests | billed read units | billed write units |",
             "|---|---|---|---|"]  # fmt: skip
    for name, m in results["costs"].items():
        lines.append(f"| {name} | {m['requests']:g} | {m['billed_read_units']:g} | "
                     f"{m['billed_write_units']:g} |")  # fmt: skip
    lines += ["", "| path | median ms | p99 ms | x minimal handler | x bare Get+Put |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, m in results["latency"].items():
        mine = f"{m['x_minimal']:.2f}" if "x_minimal" in m else ""
        lines.append(f"| {name} | {m['median_ms']:.2f} | {m['p99_ms']:.2f} | {mine} | "
                     f"{m['ratio']:.2f} |")  # fmt: skip
    return lines


def main() -> int:
    import os
    from pathlib import Path

    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        os.environ[name] = value
    from sessions.dynamodb import make_client
    from tests import dynamodb_local

    with dynamodb_local.running() as server:
        client = make_client(endpoint_url=server.endpoint)
        probe = make_client(endpoint_url=server.endpoint)
        results = run(client, probe)
    for line in table(results):
        print(line)
    path = Path(__file__).with_name("results.json")
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored["whatsapp"] = results
    path.write_text(json.dumps(stored, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
