"""Load as a user's traffic looks, on AWS's DynamoDB Local: 50 conversations (25 Slack DMs, 25
Messenger users) x 20 events, every event delivered 1-3 times at once, 16 deliveries in
flight, through both real edges with really signed requests, each platform with its own time
format (Slack ``event_time`` in whole seconds, Messenger ``timestamp`` in milliseconds) from a
clock minutes off ours. The conversations are busy: their items fill and move their records
out while duplicates race. Then every event is delivered once more, long after.

Every event must change state once and its reply go out once; with no crash injected, no
reply may be lost either."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import FakeSlack
from tests.keys import stored
from tests.reliability.conftest import SpyBot, consistency, edges

pytestmark = pytest.mark.dynamodb_local

CONVERSATIONS = 50
EVENTS = 20
THREADS = 16
#: The platforms' clocks against ours (seconds): Slack's ahead, Meta's behind.
SLACK_SKEW = 170
MESSENGER_SKEW = 95.3


def test_busy_conversations_under_concurrent_redeliveries(
    fake: FakeSlack, ddb_store: DynamoDBStore
) -> None:
    rng = random.Random(20261129)
    bot = SpyBot()
    sessions = Sessions(ddb_store, max_attempts=20, backoff=0.005, max_backoff=0.1)
    slack, messenger = edges(fake, sessions, bot, workers=1)
    now = time.time()

    rounds: list[list[tuple[str, bytes]]] = []
    expected: dict[ConversationKey, list[str]] = {}
    for e in range(EVENTS):
        batch: list[tuple[str, bytes]] = []
        for c in range(CONVERSATIONS):
            # The first item's length puts each conversation's state at another place in its
            # KB: some items have room for many records, some for a few.
            pad = 1 + (37 * c) % 480 if e == 0 else rng.randint(1, 30)
            text = f"c{c:02d} event {e:02d}: {'x' * pad}"
            if c % 2 == 0:
                key = ConversationKey.slack(team="T0001", channel=f"D{c:04d}", user=f"U{c:04d}")
                body = sr.dm_body(f"add {text}", channel=key.sk, user=key.user,
                                  event_id=f"Ev{c:03d}{e:03d}LOAD")  # fmt: skip
                # Whole seconds, several events of a conversation in the same second.
                body["event_time"] = int(now + SLACK_SKEW + e // 3)
                platform = "slack"
            else:
                key = ConversationKey.messenger(page=mr.PAGE, psid=f"{8880000 + c}")
                # Milliseconds: several events of a conversation in the same second.
                at = int((now + MESSENGER_SKEW + e * 0.7) * 1000)
                message = mr.text(f"add {text}", psid=key.user, mid=f"m_load_{c}_{e}", timestamp=at)
                body = mr.single(message)
                platform = "messenger"
            expected.setdefault(key, []).append(text)
            raw = json.dumps(body).encode()
            batch += [(platform, raw)] * rng.randint(1, 3)  # copies in flight together
        rounds.append(batch)
    deliveries = [d for batch in rounds for d in batch]

    def deliver(item: tuple[str, bytes]) -> int:
        platform, raw = item
        if platform == "slack":  # signed at delivery time, as Slack does on every retry
            headers = {"content-type": "application/json", **sr.sign(raw)}
            return int(slack.handle(sr.http_v2(raw, headers, base64_body=False))["statusCode"])
        return int(messenger.handle(mr.post(raw))["statusCode"])

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = Counter(pool.map(deliver, deliveries))
    assert statuses == {200: len(deliveries)}, statuses

    # The conversations really filled: their records moved out to pages.
    items = ddb_store.client.scan(TableName=ddb_store.table)["Items"]
    pages = sum(1 for item in items if item.get("kind", {}).get("S") == "page")
    assert pages >= CONVERSATIONS

    # Long after, every event once more (its record in a page now, or inline): duplicates.
    late = [(p, raw) for batch in rounds for raw, p in {r: p for p, r in batch}.items()]
    with ThreadPoolExecutor(THREADS) as pool:
        assert Counter(pool.map(deliver, late)) == {200: len(late)}

    # Applied exactly once, nothing half written.
    for key, texts in expected.items():
        conversation = sessions.get(stored(key))
        assert conversation is not None, key
        assert sorted(i["text"] for i in conversation.state["items"]) == sorted(texts), key
        assert consistency(ddb_store, stored(key)) == (EVENTS, EVENTS), key

    # Answered exactly once: one "Added" reply per event.
    sent: Counter[str] = Counter()
    for call in fake.posts():
        sent[_added(call.body["text"])] += 1
    for call in fake.sends():
        sent[_added(call.body["message"]["text"])] += 1
    assert set(sent) == {t for texts in expected.values() for t in texts}
    assert set(sent.values()) == {1}


def _added(text: Any) -> str:
    assert isinstance(text, str) and text.startswith("Added “"), text
    return text.split("“", 1)[1].split("”", 1)[0]
