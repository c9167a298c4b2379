"""Both edges built in process over a store the test chooses (often a wrapper that injects
faults or counts writes), with outbound calls going to the recording fake server."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

import handlers.messenger
import handlers.slack
from bot import Message, Reply
from examples.todo import TodoBot
from handlers.settings import Settings, from_env
from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore, make_client
from sessions.store import Store
from tests.fakes import FakeSlack, fake_slack


class Crash(BaseException):
    """The process dies here (timeout, OOM, a killed container): nothing after it runs in
    this invocation, and no ``except Exception`` of ours sees it. The platform then sees no
    200 and redelivers."""


@dataclass
class SpyBot:
    """The todo bot, counting the turns that reached it (a bot that is not a ``bot.Bot``
    subclass: it declares what it handles itself)."""

    commands = TodoBot.commands
    actions = TodoBot.actions
    namespace = TodoBot.namespace  # the todo bot's items: tests read them as the todo bot's
    inner: TodoBot = field(default_factory=TodoBot)
    turns: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def turn(self, state: dict[str, Any], message: Message) -> tuple[Any, Sequence[Reply], Any]:
        with self.lock:
            self.turns.append(message)
        return self.inner.turn(state, message)

    def is_slow(self, message: Message) -> bool:
        return False


def settings_for(fake: FakeSlack) -> Settings:
    return from_env(fake.edge_env())


def edges(
    fake: FakeSlack, sessions: Sessions, bot: Any, **messenger_overrides: Any
) -> tuple[handlers.slack.SlackEdge, handlers.messenger.MessengerEdge]:
    settings = settings_for(fake)
    slack = handlers.slack.build(settings, sessions=sessions, bot=bot)
    messenger = handlers.messenger.build(
        settings, sessions=sessions, bot=bot, **messenger_overrides
    )
    return slack, messenger


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with fake_slack() as server:
        yield server


@pytest.fixture
def ddb_store(dynamodb_endpoint: str, local_table: str) -> Iterator[DynamoDBStore]:
    store = DynamoDBStore(
        local_table, client=make_client(endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    )
    yield store
    store.close()


def consistency(store: Store, key: ConversationKey) -> tuple[int, int]:
    """(state version, event records) for one conversation: equal when no turn was half
    written (each commit writes the state and its event record together)."""
    from sessions.store import EventRecord, StoredState

    version, events = 0, 0
    for sk, item in store.user_items(key.user_key):
        if isinstance(item, StoredState) and sk == key.sk:
            version = item.version
        elif isinstance(item, EventRecord) and sk.startswith(f"{key.sk}#evt#"):
            events += 1
    return version, events
