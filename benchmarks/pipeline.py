"""What the whole handler path costs over a hand-written minimal handler and over the bare
requests, on the same engine, interleaved.

Each round runs, in turn: a Slack slash command through ``SlackEdge.handle`` (verify, parse,
load, turn, commit; the reply is the ack's body), a Slack DM event (the same, plus
``chat.postMessage`` to the local fake), a Messenger message through ``MessengerEdge.handle``
(the same, plus the Send API call to the local fake); the same three requests through the
hand-written minimal correct handlers of ``benchmarks.minimal`` (verify, parse, one GetItem,
one conditional PutItem, the reply); and the floor: a bare ``GetItem`` + ``PutItem`` of a
conversation item of the same size. All against DynamoDB Local.

The Messenger rounds also time the window in which a crash loses a reply: from the commit's
answer to the Send API's answer.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from benchmarks.minimal import Minimal
from handlers import messenger as messenger_edge
from handlers import slack as slack_edge
from handlers.messenger import SendAPI
from handlers.settings import from_env
from sessions import Sessions
from sessions.dynamodb import DynamoDBStore, create_table
from sessions.store import EventWrite
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import fake_slack


class TimedStore(DynamoDBStore):
    """The real store, noting when each commit was answered."""

    last_commit_done = 0.0

    def commit(self, write: EventWrite) -> None:
        super().commit(write)
        self.last_commit_done = time.perf_counter()


class TimedSendAPI(SendAPI):
    windows: list[float]
    store: TimedStore

    def send(
        self, psid: str, message: Any, *, deadline: float | None = None, token: str | None = None
    ) -> Any:
        result = super().send(psid, message, deadline=deadline, token=token)
        self.windows.append(time.perf_counter() - self.store.last_commit_done)
        return result


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "n": len(ordered),
    }


def run(client: Any, *, rounds: int = 300, warmup: int = 20) -> dict[str, Any]:
    table = f"bench-pipeline-{uuid.uuid4().hex[:8]}"
    create_table(client, table)
    store = TimedStore(table, client=client)
    sessions = Sessions(store)
    with fake_slack() as fake:
        settings = from_env(fake.edge_env())
        send_api = TimedSendAPI(settings.messenger_api_url, settings.messenger_page_token)
        send_api.windows, send_api.store = [], store
        slack = slack_edge.build(settings, sessions=sessions)
        messenger = messenger_edge.build(settings, sessions=sessions, send_api=send_api)

        # Conversations with a few items, so that every turn loads and stores a real state.
        for text in ("add milk", "add bread", "add tea"):
            assert (
                slack.handle(sr.slash(text, channel="C0BENCH", user="U0BENCH"))["statusCode"] == 200
            )
            dm = sr.dm_body(text, channel="D0BENCH", user="U0BENCH")
            assert slack.handle(sr.json_event(dm))["statusCode"] == 200
            message = mr.single(mr.text(text, psid="4440001"))
            assert messenger.handle(mr.post(message))["statusCode"] == 200
        item = client.get_item(
            TableName=table,
            Key={"pk": {"S": "slack#T0001#U0BENCH"}, "sk": {"S": "todo:C0BENCH"}},  # the todo bot's
            ConsistentRead=True,
        )["Item"]
        minimal = Minimal(
            client,
            table,
            slack_secret=str(settings.slack_signing_secret),
            app_secret=str(settings.messenger_app_secret),
            slack_api_url=str(settings.slack_api_url),
            graph_url=settings.messenger_api_url,
        )
        for text in ("add milk", "add bread", "add tea"):
            minimal.slack_command(sr.slash(text, channel="C0BENCH", user="U0MIN"))
            minimal.slack_event(sr.json_event(sr.dm_body(text, channel="D0BENCH", user="U0MIN")))
            minimal.messenger(mr.post(mr.single(mr.text(text, psid="4440002"))))
        bare_key = {"pk": {"S": "bench#bare"}, "sk": {"S": "C0BENCH"}}
        bare_item = {**item, **bare_key}

        samples: dict[str, list[float]] = {
            "slack slash command": [],
            "slack DM event (+ chat.postMessage)": [],
            "messenger message (+ Send API)": [],
            "minimal: slack slash command": [],
            "minimal: slack DM event": [],
            "minimal: messenger message": [],
            "bare GetItem + PutItem": [],
        }
        send_api.windows.clear()
        for i in range(warmup + rounds):
            # Requests are built and signed outside the timed part, as the platform does.
            slash = sr.slash("list", channel="C0BENCH", user="U0BENCH")
            dm = sr.json_event(sr.dm_body("list", channel="D0BENCH", user="U0BENCH"))
            msg = mr.post(mr.single(mr.text("list", psid="4440001")))
            timed = []
            t = time.perf_counter()
            assert slack.handle(slash)["statusCode"] == 200
            timed.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert slack.handle(dm)["statusCode"] == 200
            timed.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert messenger.handle(msg)["statusCode"] == 200
            timed.append(time.perf_counter() - t)
            min_dm = sr.dm_body("list", channel="D0BENCH", user="U0MIN")
            mins = (
                (minimal.slack_command, sr.slash("list", channel="C0BENCH", user="U0MIN")),
                (minimal.slack_event, sr.json_event(min_dm)),
                (minimal.messenger, mr.post(mr.single(mr.text("list", psid="4440002")))),
            )
            for handle, request in mins:
                t = time.perf_counter()
                assert handle(request)["statusCode"] == 200
                timed.append(time.perf_counter() - t)
            t = time.perf_counter()
            client.get_item(TableName=table, Key=bare_key, ConsistentRead=True)
            client.put_item(TableName=table, Item=bare_item)
            timed.append(time.perf_counter() - t)
            if i >= warmup:
                for name, value in zip(samples, timed, strict=True):
                    samples[name].append(value)
        windows = send_api.windows[warmup:]
        sends = len(fake.sends())

    floor = statistics.median(samples["bare GetItem + PutItem"])
    out: dict[str, Any] = {}
    for name, values in samples.items():
        out[name] = {**_stats(values), "ratio": round(statistics.median(values) / floor, 2)}
    for ours, theirs in MINIMAL_OF.items():
        mine = statistics.median(samples[ours]) / statistics.median(samples[theirs])
        out[ours]["x_minimal"] = round(mine, 2)
    out["loss window (commit answered → Send API answered)"] = _stats(windows)
    out["messenger_sends"] = sends
    return out


#: Our path -> the minimal handler of the same request.
MINIMAL_OF = {
    "slack slash command": "minimal: slack slash command",
    "slack DM event (+ chat.postMessage)": "minimal: slack DM event",
    "messenger message (+ Send API)": "minimal: messenger message",
}


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| path | median ms | p99 ms | x minimal handler | x bare Get+Put |",
        "|---|---|---|---|---|",
    ]
    for name, m in results.items():
        if not isinstance(m, dict):
            continue
        ratio = f"{m['ratio']:.2f}" if "ratio" in m else ""
        mine = f"{m['x_minimal']:.2f}" if "x_minimal" in m else ""
        lines.append(f"| {name} | {m['median_ms']:.2f} | {m['p99_ms']:.2f} | {mine} | {ratio} |")
    return lines
