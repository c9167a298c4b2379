"""Duplicate storm: 2,000 events over 50 conversations (25 Slack DMs, 25 Messenger users),
each delivered 1-4 times, in random order, 8 deliveries at a time, through both real edges
(really signed requests) on AWS's DynamoDB Local, replies going to the recording fake.

Every event must be applied exactly once, and its one reply sent exactly once: no crash is
injected here, so no reply may be lost either (the crash window is test_faults.py's)."""

from __future__ import annotations

import json
import random
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

EVENTS = 2000
CONVERSATIONS = 50
THREADS = 8


def slack_key(n: int) -> ConversationKey:
    return ConversationKey.slack(team="T0001", channel=f"D{n:04d}", user=f"U{n:04d}")


def messenger_key(n: int) -> ConversationKey:
    return ConversationKey.messenger(page=mr.PAGE, psid=f"{7770000 + n}")


def test_every_event_applied_once_and_answered_once(
    fake: FakeSlack, ddb_store: DynamoDBStore
) -> None:
    rng = random.Random(20261122)
    bot = SpyBot()
    # Lost races are expected here (up to 4 deliveries of one conversation at a time): allow
    # the runner more attempts than the default so that none gives up with BusyError.
    sessions = Sessions(ddb_store, max_attempts=20, backoff=0.005, max_backoff=0.1)
    slack, messenger = edges(fake, sessions, bot, workers=1)

    deliveries: list[tuple[str, bytes, dict[str, str]]] = []
    expected: dict[ConversationKey, set[str]] = {}
    copies = Counter[str]()
    for n in range(EVENTS):
        conversation = n % CONVERSATIONS
        text = f"e{n:04d}"
        if conversation % 2 == 0:
            key = slack_key(conversation)
            body = sr.dm_body(
                f"add {text}", channel=key.sk, user=key.user, event_id=f"Ev{n:08d}STORM"
            )
            raw = json.dumps(body).encode()
        else:
            key = messenger_key(conversation)
            message = mr.text(f"add {text}", psid=key.user, mid=f"m_storm_{n}")
            raw = json.dumps(mr.single(message)).encode()
        expected.setdefault(key, set()).add(text)
        k = rng.randint(1, 4)
        copies[text] = k
        platform = "slack" if key.platform == "slack" else "messenger"
        for attempt in range(k):
            deliveries.append((platform, raw, {"retry": str(attempt)}))
    rng.shuffle(deliveries)

    def deliver(item: tuple[str, bytes, dict[str, str]]) -> int:
        platform, raw, meta = item
        # Sign at delivery time, as the platform does on every retry.
        if platform == "slack":
            headers = {"content-type": "application/json", **sr.sign(raw)}
            if meta["retry"] != "0":
                headers["x-slack-retry-num"] = meta["retry"]
                headers["x-slack-retry-reason"] = "http_timeout"
            event = sr.http_v2(raw, headers, base64_body=False)
            return int(slack.handle(event)["statusCode"])
        event = mr.post(raw)
        return int(messenger.handle(event)["statusCode"])

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = Counter(pool.map(deliver, deliveries))

    assert statuses == {200: len(deliveries)}, statuses
    assert sum(copies.values()) == len(deliveries) > EVENTS  # some events really were retried

    # Applied exactly once: every conversation holds exactly its events' items, once each,
    # and its version equals its number of event records (no half-written turn).
    for key, texts in expected.items():
        conversation = sessions.get(stored(key))
        assert conversation is not None, key
        items = [i["text"] for i in conversation.state["items"]]
        assert sorted(items) == sorted(texts), key
        assert consistency(ddb_store, stored(key)) == (len(texts), len(texts))

    # Answered exactly once: one "Added" reply per event, on the right platform and user.
    sent: Counter[str] = Counter()
    for call in fake.posts():
        sent[_added(call.body["text"])] += 1
        assert call.body["channel"].startswith("D")
    for call in fake.sends():
        sent[_added(call.body["message"]["text"])] += 1
    assert set(sent) == {f"e{n:04d}" for n in range(EVENTS)}
    assert set(sent.values()) == {1}

    # The bot ran at least once per event; more only after a lost race (pure turns re-run).
    assert len(bot.turns) >= EVENTS


def _added(text: Any) -> str:
    assert isinstance(text, str) and text.startswith("Added “"), text
    return text.split("“", 1)[1].split("”", 1)[0]
