"""Property, model-based: the DynamoDB record layout (``sessions.dynamodb_layout``, pure)
against a plain reference model, a dict of every event id ever committed with its expiry.

The machine plays one conversation as DynamoDB would hold it: a dict of items by sort key, the
layout's writes applied to it, its lookups answered from it (``Query`` as "the first sort key
in the range"). Events come with times at the platforms' real resolutions (whole seconds,
milliseconds, microseconds, unknown), from a platform clock minutes ahead of or behind ours;
conversations are quiet or busy, items fill and move out, records expire and TTL removes
them, any earlier event is redelivered at any later time, and writers die between the moved
records and the conversation item or write the pages of an item they read long ago.

Slack's Events API sends two times: the envelope's ``event_time`` (whole seconds) and the
event's ``event_ts`` (microseconds, in that second). The layout before finer times filed its
events by the first; a machine may start in that era (its items without the coarse mark, as that
layout left them) and *deploy* at any step, after which the same events, redelivered, are keyed
by the second. Bursts put many events in one second, at one resolution or mixed, some delivered
out of order; whole seconds (slash commands) give many events one key. A hot item's events
reach the layout in the serialised path's order: late, out of order, within the page window or
past it.

Invariant: a redelivery is found as a duplicate for as long as its record lives (and at most
a minute longer: inline records keep their expiry in units of 64 s), and a new event is never
taken for one.

``LAYOUT_EXAMPLES`` sets the number of examples (the default keeps ``make test`` quick;
``make test-long`` runs thousands).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import os
import random

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sessions import dynamodb_layout as layout
from sessions.keys import ConversationKey
from sessions.store import EventRecord, StoredState

KEY = ConversationKey.messenger(page="100", psid="200")
TTL = 3_600  # record lifetime (the rule does not depend on it; short, so records expire)
START = 1_800_000_000
RESOLUTIONS = ("s", "ms", "us", "none", "slack")


def platform_time(our_now: float, skew: float, resolution: str) -> float | None:
    """The time a platform sends (``slack``: an Events API event's ``event_ts``, whose whole
    second is its ``event_time``)."""
    when = our_now + skew
    if resolution == "s":
        return float(int(when))
    if resolution == "ms":
        return int(when * 1000) / 1000
    if resolution in ("us", "slack"):
        return int(when * 1_000_000) / 1_000_000
    return None


class Table:
    """One conversation's items, as DynamoDB holds them (writes are whole-item puts)."""

    def __init__(self) -> None:
        self.items: dict[str, layout.Item] = {}

    def put(self, item: layout.Item) -> None:
        self.items[item["sk"]["S"]] = item

    def query(self, low: str, high: str, limit: int, start: str | None) -> list[layout.Item]:
        """A ``Query`` of the range, ``limit`` items after ``start`` (exclusive)."""
        keys = sorted(self.items)
        at = bisect.bisect_right(keys, start) if start else bisect.bisect_left(keys, low)
        return [self.items[k] for k in keys[at : at + limit] if k <= high]

    def sweep(self, now: int, rng: random.Random) -> None:
        """TTL: some expired items go (DynamoDB removes them late and in no order)."""
        for sk, item in list(self.items.items()):
            if layout.num(item, "expires_at") <= now and rng.random() < 0.7:
                del self.items[sk]


class LayoutMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = Table()
        self.committed: dict[str, int] = {}  # the reference: event id -> expiry
        self.times: dict[str, float | None] = {}
        self.slack: set[str] = set()  # Events API events: filed by whole seconds until deployed
        self.deployed = True
        self.now = float(START)
        self.skew = 0.0
        self.state_size = 200
        self.version = 0
        self.snapshots: list[layout.Item] = []
        self.rng = random.Random(0)
        self.events = 0
        self.found = 0

    @initialize(
        skew=st.floats(min_value=-300, max_value=300, allow_nan=False),
        state_size=st.sampled_from([50, 200, 700, 900, 1500]),
        seed=st.integers(0, 2**32),
        deployed=st.booleans(),
    )
    def setup(self, skew: float, state_size: int, seed: int, deployed: bool) -> None:
        self.skew = skew
        self.state_size = state_size
        self.rng = random.Random(seed)
        self.deployed = deployed

    def time_of(self, name: str) -> float | None:
        """The event's time as the edge of the moment gives it: an Events API event's
        ``event_ts`` since the deploy, its whole second before."""
        when = self.times[name]
        if name in self.slack and not self.deployed and when is not None:
            return float(int(when))
        return when

    def new_time(self, name: str, when: float, resolution: str) -> None:
        self.times[name] = platform_time(when, self.skew, resolution)
        if resolution == "slack":
            self.slack.add(name)

    def write(self, item: layout.Item) -> None:
        """The conversation item as the layout of the moment leaves it: before the deploy,
        without the coarse mark (which that layout did not know)."""
        if not self.deployed:
            item = {k: v for k, v in item.items() if k not in ("cm", "cmx")}
        self.table.put(item)

    # -- the store's requests, answered by the table --------------------------------------------

    def conversation(self) -> layout.Conversation:
        return layout.Conversation.of(self.table.items.get(KEY.sk))

    def lookup(self, name: str) -> tuple[layout.Conversation, EventRecord | None]:
        conversation = self.conversation()
        event_sk = KEY.event_sk(name)
        d = layout.digest(event_sk)
        when = self.time_of(name)
        key = layout.event_key(when)
        record = conversation.record(d)
        if record is None:
            where = conversation.lookup(key, layout.second_key(when))
            if where.own:
                for sk in (event_sk, layout.record_sk(KEY.sk, d)):
                    found = layout.parse(self.table.items[sk]) if sk in self.table.items else None
                    if isinstance(found, EventRecord):
                        record = found
                        conversation = dataclasses.replace(conversation, sibling=True)
                        event("found in an item of its own")
                        break
            if where.page:  # the store reads the pages past an own record too (a stale one)
                pages = self.pages(conversation.chain, where.low, key)
                paged = layout.paged_record(pages, d, conversation.generation)
                if paged is not None and (record is None or paged.expires_at > record.expires_at):
                    record = paged
                    conversation = dataclasses.replace(conversation, sibling=False)
                    event("found in a page")
                elif record is None:
                    event("not in a page")
        return conversation, record

    def pages(self, chain: str, low: int, high: int) -> list[layout.Item]:
        """What the store's page lookup reads (``DynamoDBStore._pages``), from the table: two
        pages, then more while the last is within the window above ``high``."""
        first, last = layout.page_range(KEY.sk, chain, low)
        read: list[layout.Item] = []
        start = None
        while layout.read_on(high, read):
            limit = 2 if start is None else 8
            out = self.table.query(first, last, limit, start)
            read += out
            if len(out) < limit:  # no LastEvaluatedKey: the chain ended
                break
            start = out[-1]["sk"]["S"]
        pages = layout.pages_for(low, high, read)
        if len(pages) > 1:
            event("read several pages")
        return pages

    def deliver(self, name: str, response: int) -> None:
        now = int(self.now)
        conversation, record = self.lookup(name)
        duplicate = record is not None and record.expires_at > now
        live = self.committed.get(name, 0) > now
        where = f"{name} at key {layout.event_key(self.time_of(name))}"
        assert duplicate or not live, f"{where}: applied again"
        # A record may outlive its expiry by up to a minute (the layout rounds it up), so
        # only an event never committed is sure to be new.
        assert not duplicate or name in self.committed, f"{where}: taken for a duplicate"
        assert not duplicate or now < self.committed[name] + layout.UNIT, f"{where}: kept too long"
        if duplicate:
            self.found += 1
            return
        self.version += 1
        state = StoredState(
            version=self.version,
            blob=b"j" + os.urandom(self.state_size // 2).hex().encode()[: self.state_size],
            expires_at=now + 30 * 86_400,
            updated_at=now,
        )
        answer = b"r" * response if response else None
        placed = layout.place(
            conversation,
            pk=KEY.pk,
            sk=KEY.sk,
            state=state,
            event_sk=KEY.event_sk(name),
            event=EventRecord(
                version=self.version,
                committed_at=now,
                expires_at=now + TTL,
                response=answer,
                response_expires_at=now + 300 if answer else 0,
            ),
            key=layout.event_key(self.time_of(name)),
            now=now,
            new_chain=hashlib.sha256(f"{name}{now}".encode()).hexdigest()[:8],
        )
        if conversation.item is not None:
            self.snapshots.append(conversation.item)
        if placed.moved:
            event("records moved out")
        for item in placed.moved:
            if layout.PAGE in item["sk"]["S"]:
                keys = [e.key for e in layout.Conversation.of(item).entries]
                if any(k <= conversation.paged for k in keys):
                    event("late records paged")
            self.table.put(item)
        for sk, own in placed.records:
            self.table.put(layout.event_item(KEY.pk, sk, own))
        self.write(placed.item | {"w": {"B": os.urandom(8)}})
        self.committed[name] = now + TTL
        self.events += 1

    # -- rules ------------------------------------------------------------------------------------

    @rule(
        resolution=st.sampled_from(RESOLUTIONS),
        late=st.sampled_from([0.0, 0.0, 0.0, 2.0, 90.0, 1_800.0]),
        response=st.sampled_from([0, 0, 0, 40, 600]),
    )
    def new_event(self, resolution: str, late: float, response: int) -> None:
        """A new event; sometimes one that happened a while before newer ones arrived."""
        event = f"e{len(self.times)}"
        self.new_time(event, self.now - late, resolution)
        self.deliver(event, response)

    @rule(
        count=st.integers(5, 60),
        gap=st.sampled_from([0.001, 0.03, 0.3, 1.0, 5.0, 60.0]),
        resolution=st.sampled_from([*RESOLUTIONS, "mixed"]),
        swaps=st.sampled_from([0, 0, 3, 20]),
    )
    def burst(self, count: int, gap: float, resolution: str, swaps: int) -> None:
        """A busy stretch: many events at a cadence (many in one second), at one resolution
        or mixed; ``swaps`` of them delivered after the next (two webhooks racing), and now
        and then one of the burst delivered again within it."""
        names = []
        for _ in range(count):
            self.now += gap
            names.append(event := f"e{len(self.times)}")
            chosen = self.rng.choice(RESOLUTIONS) if resolution == "mixed" else resolution
            self.new_time(event, self.now, chosen)
        for _ in range(swaps):
            at = self.rng.randrange(len(names) - 1)
            names[at], names[at + 1] = names[at + 1], names[at]
        for at, name in enumerate(names):
            self.deliver(name, 0)
            if at and self.rng.random() < 0.1:
                self.deliver(names[self.rng.randrange(at)], 0)

    @rule(
        count=st.integers(5, 40),
        spread=st.sampled_from([0.5, 3.0, 9.0, 25.0]),
        resolution=st.sampled_from([*RESOLUTIONS, "mixed"]),
    )
    def hot(self, count: int, spread: float, resolution: str) -> None:
        """A hot item's votes: events of the last ``spread`` seconds applied in the order the
        serialised path received them (any), so most arrive after newer ones were paged; with
        ``spread`` past :data:`~sessions.dynamodb_layout.PAGE_WINDOW` some are later than it."""
        names = []
        for _ in range(count):
            names.append(event := f"e{len(self.times)}")
            chosen = self.rng.choice(RESOLUTIONS) if resolution == "mixed" else resolution
            self.new_time(event, self.now - self.rng.uniform(0, spread), chosen)
        self.rng.shuffle(names)
        for at, name in enumerate(names):
            self.deliver(name, 0)
            if at and self.rng.random() < 0.2:
                self.deliver(names[self.rng.randrange(at)], 0)
        self.now += spread / 10

    @precondition(lambda self: not self.deployed)
    @rule()
    def deploy(self) -> None:
        """The layout with finer Slack times takes over the items the earlier one wrote."""
        self.deployed = True

    @precondition(lambda self: bool(self.times))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """Any earlier event again, with its own time."""
        event = data.draw(st.sampled_from(sorted(self.times)))
        self.deliver(event, 0)

    @rule(seconds=st.sampled_from([0.0, 0.001, 0.7, 1.0, 30.0, 299.0, 1_200.0, 3_599.0, 3_601.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(drift=st.floats(min_value=-5, max_value=5, allow_nan=False))
    def drift(self, drift: float) -> None:
        """The platform's clock drifts against ours (within a few minutes)."""
        self.skew = max(-300.0, min(300.0, self.skew + drift))

    @rule()
    def ttl_sweep(self) -> None:
        self.table.sweep(int(self.now), self.rng)

    @rule(
        resolution=st.sampled_from(RESOLUTIONS),
        size=st.sampled_from([50, 200, 900, 1500]),
    )
    def crash_after_moving(self, resolution: str, size: int) -> None:
        """A writer dies between its moved records and the conversation item."""
        conversation = self.conversation()
        if conversation.item is None:
            return
        event = f"crashed{len(self.times)}"
        self.new_time(event, self.now, resolution)
        placed = layout.place(
            conversation,
            pk=KEY.pk,
            sk=KEY.sk,
            state=StoredState(version=0, blob=b"j" + b"x" * size, expires_at=0, updated_at=0),
            event_sk=KEY.event_sk(event),
            event=EventRecord(version=0, committed_at=int(self.now), expires_at=int(self.now) + 1),
            key=layout.event_key(self.time_of(event)),
            now=int(self.now),
            new_chain=f"{self.rng.getrandbits(32):08x}",
        )
        for item in placed.moved:
            self.table.put(item)
        del self.times[event]  # it never happened: never redelivered as committed

    @precondition(lambda self: bool(self.snapshots))
    @rule(data=st.data())
    def stale_writer(self, data: st.DataObject) -> None:
        """A slow writer that read an older item writes its moved records now (its
        conversation write then fails: the item moved on)."""
        old = data.draw(st.sampled_from(self.snapshots[-20:]))
        placed = layout.place(
            layout.Conversation.of(old),
            pk=KEY.pk,
            sk=KEY.sk,
            state=StoredState(version=0, blob=b"j{}", expires_at=0, updated_at=0),
            event_sk=KEY.event_sk("stale"),
            event=EventRecord(version=0, committed_at=int(self.now), expires_at=int(self.now) + 1),
            key=0,
            now=data.draw(st.sampled_from([layout.num(old, "updated_at"), int(self.now)])),
            new_chain=f"{self.rng.getrandbits(32):08x}",
        )
        for item in placed.moved:
            self.table.put(item)

    @invariant()
    def item_stays_small(self) -> None:
        item = self.table.items.get(KEY.sk)
        if item is not None:
            # The records never push the item past the state's KB plus one.
            base = layout.billed_kb(self.state_size + 200 + layout.MIN_ROOM)
            assert layout.size(item) <= (base + 1) * layout.KB + 600


LayoutMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("LAYOUT_EXAMPLES", "150")),
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLayoutModel = LayoutMachine.TestCase


def test_event_key_keeps_order_at_every_resolution() -> None:
    """Keys are monotone in the time and identical for the same time, whatever the digits."""
    times = [1_800_000_000.0, 1_800_000_000.0001, 1_800_000_000.000999, 1_800_000_000.7,
             1_800_000_000.700001, 1_800_000_001.0]  # fmt: skip
    keys = [layout.event_key(t) for t in times]
    assert keys == sorted(keys)
    assert keys[0] < keys[1] and keys[3] < keys[4]
    assert layout.event_key(None) == 0 and layout.event_key(float("nan")) == 0
    assert layout.event_key(float("inf")) == 0 and layout.event_key(-5.0) == 0
