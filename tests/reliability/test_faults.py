"""Fault injection at each step of a turn, then the platform's redelivery.

A Messenger message (`add milk`, one reply) goes through the real edge on AWS's DynamoDB
Local; a store wrapper and a Send API wrapper kill the invocation (``Crash``) at one step.
Meta then redelivers the same signed request, as it does when it gets no 200. After that:

- the state change is applied exactly once, whatever the step;
- in the default mode no reply is ever sent twice, and the one window where a reply is lost
  is "committed, not yet sent" (a crash after the commit, before the Send API call);
- in sent-mark mode that window is closed (the redelivery finds the unmarked outbox and
  sends it) at the cost of a third request per turn, and the price is the opposite window: a
  crash after sending but before the mark repeats the reply.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.messenger import SendAPI
from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore
from sessions.store import EventRecord, EventWrite, Snapshot, StoredState
from tests import messenger_requests as mr
from tests.fakes import FakeSlack
from tests.keys import stored
from tests.reliability.conftest import Crash, SpyBot, consistency, edges, settings_for

pytestmark = pytest.mark.dynamodb_local

STEPS = [
    "before_load",
    "after_load",
    "in_turn",
    "before_commit",
    "after_commit",  # committed; the process dies before the Send API call
    "while_sending",  # the Send API took the reply; the process dies before it returns
    "before_mark",  # sent-mark mode only: sent, then dies before recording the mark
]


class FaultyStore:
    """Delegates to a real store; raises ``Crash`` once at the armed step."""

    def __init__(self, inner: DynamoDBStore) -> None:
        self.inner = inner
        self.armed: str | None = None
        self.fired: list[str] = []

    def _maybe(self, step: str) -> None:
        if self.armed == step:
            self.armed = None
            self.fired.append(step)
            raise Crash(step)

    def load(self, key: ConversationKey, event_sk: str | None, **kw: Any) -> Snapshot:
        self._maybe("before_load")
        snap = self.inner.load(key, event_sk, **kw)
        self._maybe("after_load")
        return snap

    def commit(self, write: EventWrite) -> None:
        self._maybe("before_commit")
        self.inner.commit(write)
        self._maybe("after_commit")

    def record_failure(self, write: EventWrite) -> None:
        self._maybe("before_commit")
        self.inner.record_failure(write)
        self._maybe("after_commit")

    def claim(self, write: EventWrite) -> None:
        self._maybe("before_commit")
        self.inner.claim(write)
        self._maybe("after_commit")

    def mark_sent(self, key: ConversationKey, event_sk: str, *, sent_at: int) -> None:
        self._maybe("before_mark")
        self.inner.mark_sent(key, event_sk, sent_at=sent_at)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FaultySendAPI(SendAPI):
    """The real Send API client; ``while_sending`` dies after the fake has the message."""

    def __init__(self, store: FaultyStore, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.store = store

    def send(
        self, psid: str, message: Any, *, deadline: float | None = None, token: str | None = None
    ) -> Any:
        result = super().send(psid, message, deadline=deadline, token=token)
        self.store._maybe("while_sending")
        return result


class CrashingBot(SpyBot):
    armed: bool = False

    def turn(self, state: dict[str, Any], message: Any) -> Any:
        if self.armed:
            self.armed = False
            raise Crash("in_turn")
        return super().turn(state, message)


def run_case(
    step: str, sent_mark: bool, fake: FakeSlack, ddb_store: DynamoDBStore
) -> dict[str, Any]:
    store = FaultyStore(ddb_store)
    # resend_after=0: a redelivery may resend at once (the default 10 s keeps a retry that
    # races the first sender from doubling its send; here the first sender is dead).
    sessions = Sessions(store, sent_mark=sent_mark, resend_after=0)  # type: ignore[arg-type]
    bot = CrashingBot()
    settings = settings_for(fake)
    send_api = FaultySendAPI(store, settings.messenger_api_url, settings.messenger_page_token)
    _, messenger = edges(fake, sessions, bot, send_api=send_api)

    psid = str(8880000 + STEPS.index(step) * 10 + int(sent_mark))
    key = ConversationKey.messenger(page=mr.PAGE, psid=psid)
    raw = json.dumps(mr.single(mr.text("add milk", psid=psid))).encode()

    if step == "in_turn":
        bot.armed = True
    else:
        store.armed = step
    deliveries = 0
    crashed = False
    status = None
    while status != 200:
        deliveries += 1
        assert deliveries <= 3, "the redelivery did not complete the turn"
        try:
            status = messenger.handle(mr.post(raw))["statusCode"]
        except Crash:
            crashed = True  # Meta saw no answer: it redelivers the same request
    conversation = sessions.get(stored(key))
    items = [] if conversation is None else [i["text"] for i in conversation.state["items"]]
    sent = [c for c in fake.sends() if c.body["recipient"]["id"] == psid]
    return {
        "crashed": crashed or bool(store.fired),
        "deliveries": deliveries,
        "items": items,
        "replies_sent": len(sent),
        "consistent": consistency(ddb_store, stored(key)),
    }


#: step -> replies the user receives, in the default mode and in sent-mark mode.
EXPECTED_REPLIES = {
    "before_load": (1, 1),
    "after_load": (1, 1),
    "in_turn": (1, 1),
    "before_commit": (1, 1),
    "after_commit": (0, 1),  # the documented loss window, closed by sent-mark mode
    "while_sending": (1, 2),  # sent-mark's price: no mark recorded, so the retry resends
    "before_mark": (None, 2),  # sent-mark only: same window, seen from the store's side
}


CASES = [
    (step, sent_mark)
    for step in STEPS
    for sent_mark in (False, True)
    if EXPECTED_REPLIES[step][int(sent_mark)] is not None
]


@pytest.mark.parametrize(
    ("step", "sent_mark"), CASES, ids=[f"{s}-{'sent_mark' if m else 'default'}" for s, m in CASES]
)
def test_fault_then_redelivery(
    step: str, sent_mark: bool, fake: FakeSlack, ddb_store: DynamoDBStore
) -> None:
    expected = EXPECTED_REPLIES[step][int(sent_mark)]
    result = run_case(step, sent_mark, fake, ddb_store)
    assert result["crashed"], "the fault was not injected"
    assert result["deliveries"] == 2
    # Applied exactly once, and never half written.
    assert result["items"] == ["milk"]
    assert result["consistent"] == (1, 1)
    assert result["replies_sent"] == expected


def test_a_failing_send_is_not_retried_in_the_default_mode(
    fake: FakeSlack, ddb_store: DynamoDBStore
) -> None:
    """A Send API that keeps failing (5xx through all attempts) is logged; the turn stands,
    the answer is 200 (Meta must not redeliver a committed message), nothing is sent twice."""
    sessions = Sessions(ddb_store)
    settings = settings_for(fake)
    send_api = SendAPI(
        settings.messenger_api_url, settings.messenger_page_token, sleep=lambda s: None
    )
    _, messenger = edges(fake, sessions, SpyBot(), send_api=send_api)
    fake.failures["/v25.0/me/messages"] = [500, 500, 500]
    raw = json.dumps(mr.single(mr.text("add bread", psid="8889999"))).encode()
    assert messenger.handle(mr.post(raw))["statusCode"] == 200
    assert messenger.handle(mr.post(raw))["statusCode"] == 200
    assert fake.sends() == []
    key = ConversationKey.messenger(page=mr.PAGE, psid="8889999")
    state = sessions.get(stored(key))
    assert state is not None and [i["text"] for i in state.state["items"]] == ["bread"]


def test_the_wrapper_sees_every_store_call_of_a_turn(ddb_store: DynamoDBStore) -> None:
    """Guard for the wrapper above: it must see every store call of a turn (if the runner
    grew a new write path, the fault steps would silently stop covering it)."""
    store = FaultyStore(ddb_store)
    calls: list[str] = []
    for name in ("load", "commit", "mark_sent"):
        method = getattr(store, name)

        def spy(*a: Any, _m: Any = method, _n: str = name, **kw: Any) -> Any:
            calls.append(_n)
            return _m(*a, **kw)

        setattr(store, name, spy)
    sessions = Sessions(store, sent_mark=True)  # type: ignore[arg-type]
    key = ConversationKey.messenger(page=mr.PAGE, psid="8887777")
    result = sessions.run(
        key, "m_guard", lambda s, e: ({"n": 1}, ["hi"], None), None, sender=lambda k, r: None
    )
    assert isinstance(result.state, dict)
    assert calls == ["load", "commit", "mark_sent"]
    snap = ddb_store.load(key, key.event_sk("m_guard"))
    assert isinstance(snap.state, StoredState) and isinstance(snap.event, EventRecord)
