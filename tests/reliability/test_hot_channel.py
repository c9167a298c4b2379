"""Many writers on one item, on AWS's DynamoDB Local: twenty people vote on one poll within
the same second, each vote delivered 1-3 times at once, through the real Slack edge with
really signed requests. The poll's state is the channel's (``scope = "channel"``), so every
vote is a turn on the same item: lost races re-run, and a vote still busy at the webhook's
deadline goes to the serialised path (its item's busy turns one at a time) instead of being
dropped (Slack never redelivers an interaction). The tally must be exactly 20 and every voter
told exactly once."""

from __future__ import annotations

import json
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import handlers.slack
from examples.poll import PollBot
from handlers.pipeline.serial import GroupThreads
from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore
from tests import slack_requests as sr
from tests.fakes import FakeSlack, QueueDeferrer
from tests.reliability.conftest import settings_for

pytestmark = pytest.mark.dynamodb_local

VOTERS = 20
CHANNEL = "C0POLL01"


def test_twenty_concurrent_voters_on_one_poll(fake: FakeSlack, ddb_store: DynamoDBStore) -> None:
    rng = random.Random(20261204)
    deferrer = QueueDeferrer()
    sessions = Sessions(ddb_store)  # the defaults a deploy runs with
    slack = handlers.slack.build(
        settings_for(fake), sessions=sessions, bot=PollBot(), deferrer=deferrer
    )
    opened = slack.handle(
        sr.slash("Lunch? pizza, sushi, salad", command="/poll", channel=CHANNEL, user="U0AUTHOR")
    )
    assert opened["statusCode"] == 200
    assert "Lunch?" in json.loads(opened["body"])["text"]

    deliveries: list[dict[str, Any]] = []
    chosen: dict[str, int] = {}
    for v in range(VOTERS):
        user = f"U0V{v:04d}"
        chosen[user] = v % 3
        event = sr.block_action(
            f"1:{v % 3}",
            channel=CHANNEL,
            user=user,
            action_id="poll:vote",
            response_url=fake.response_url(f"vote-{user}"),
        )
        deliveries += [event] * rng.randint(1, 3)  # the same signed request, in flight together
    rng.shuffle(deliveries)

    with ThreadPoolExecutor(max_workers=len(deliveries)) as pool:
        codes = list(pool.map(lambda e: slack.handle(e)["statusCode"], deliveries))
    assert set(codes) == {200}
    serialised = slack.serialiser
    assert isinstance(serialised, GroupThreads)  # no queue configured: a thread per item
    assert serialised.drain(timeout=120)
    assert not deferrer.jobs  # nothing went to the plain deferral

    key = ConversationKey.slack(team="T0001", channel=CHANNEL, user="U0AUTHOR")
    stored = sessions.get(key.scoped("channel", "poll"))
    assert stored is not None
    votes = stored.state["polls"]["1"]["votes"]
    assert votes == chosen, f"{len(votes)} votes counted"
    assert stored.version == 1 + VOTERS  # the poll, then each vote once

    told = Counter(
        call.path
        for call in fake.responses()
        if str(call.body.get("text", "")).startswith("You voted")
    )
    assert told == Counter({f"/response/vote-{user}": 1 for user in chosen})
    # The last tally each voter's message shows is one that counted their vote.
    tallies = [c for c in fake.responses() if c.body.get("replace_original")]
    assert len(tallies) == VOTERS
