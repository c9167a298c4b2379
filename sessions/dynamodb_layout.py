"""How a conversation lives in DynamoDB items: pure functions of items and times, no I/O and no
clock of its own (``now`` is always an argument). :mod:`sessions.dynamodb` makes the requests.

The conversation item (``pk`` user, ``sk`` channel) holds the state and the conversation's
recent event records inline, so that the usual turn is one ``GetItem`` and one conditional
``PutItem``. Its attributes: ``state`` (codec blob, compressed only when that lowers the billed
KB), ``version``, ``updated_at``, ``gen`` (the time in ms of the event that created the item, or
of the tombstone it was written under), ``w`` (the write's token: the next commit is
conditioned on it), ``expires_at`` (TTL: the latest of the state's idle expiry ``idle_at`` and
every record's), ``ev`` (inline records, :data:`ENTRY` each), ``rs`` (inline recorded
responses), and the marks below.

Every record carries its event's *key*: the platform's event time in milliseconds, rounded up
(:func:`event_key`). Deciding whether a redelivery must look outside the item compares keys with
keys, both from the platform's clock, so the rule holds whatever the platform's resolution
(Slack's whole seconds, Messenger's milliseconds, ``action_ts`` microseconds) and however far
the platform's clock is from ours: a redelivery carries its event's time again, so its key is
the one its record was filed under. (The first layout compared event times with our commit
clock floored to seconds, and a Messenger event committed in the same second as a record moved
out compared as newer than the move: its redelivery was applied again.)

When the inline records no longer fit beside the state, they move out at once, all but the
records of the highest key when there are lower keys to page and those records are at most
half of the item's (they stay inline: more events of that key, several in one whole second,
then find the page mark below them and need no lookup):

- into a **page**: one item (``sk = <channel>#evt#p.<chain>.<hi>``) holding every record whose
  key is above the conversation's page mark ``pm``, and the *late* ones (at or below ``pm``:
  events applied after newer ones had been paged, as a hot item's turns are, in the order the
  serialised path received them; or events of the mark's own key, several in one whole second
  of a platform that sends whole seconds: a burst of slash commands) within
  :data:`PAGE_WINDOW` of ``hi``. ``hi`` is the page's highest key, or ``pm + 1`` when every
  record in it is late, and it becomes the new ``pm``: page names grow strictly along a chain.
  So page *i* holds the keys in ``(hi[i-1], hi[i]]`` and late keys down to
  ``hi[i] - PAGE_WINDOW``; the pages that can hold a key ``k`` are those whose ``hi`` is in
  ``[k, k + PAGE_WINDOW]``, or, if there is none, the first page whose ``hi >= k``
  (:func:`pages_for`): one ``Query`` from ``k`` on finds them. Many records in one plain
  write: a busy conversation pays about one more write unit per page, not one per event.
- into a record item of its own (``<channel>#evt#<digest>``) for each record later than that,
  or of unknown time. The own-record mark ``om`` covers them, as it covers the records that
  never go inline (a dead letter, a sent-mark outbox, a large response:
  ``<channel>#evt#<event hash>``).

Pages and moved records are written *before* the conversation item, as plain writes, and the
conversation item's conditional write is what makes them count. That is safe without a
transaction because what moves out is a function of the item the turn read alone: whether it
moves (the item is full), and what (its records, split by the page mark and the highest key).
Every writer that read the same item writes the same page under the same name; a page whose
conversation write then failed is either rewritten identically by the writer that succeeds, or
belongs to an item that nobody will write again. A chain lives as long as its conversation
item (whose TTL never falls below its pages'); a new item starts a chain under a fresh random
name from the
caller, so the pages of an item that expired or was deleted are never read again. A page that
TTL removed held only expired records: the next page of the chain then answers "not there",
which is right. Every record in any page is a committed event: a page can only make an event look
already done if it was.

Marks (``om``/``omx``: own records and their expiry; ``pc``/``pm``: the page chain and its
mark; ``cm``/``cmx``: the coarse mark, below) are in keys, ms. Items of older layouts still
deduplicate: 16-byte ``ids`` entries and the ``sp``/``spx`` spill mark carry our commit time, not
the event's, so they are read with a margin of :data:`MAX_SKEW` for the platform's clock.

Finer times over records filed by whole seconds. Slack's Events API was filed by its envelope's
``event_time`` (whole seconds) until the edge took the event's ``event_ts`` (microseconds), so
that the events of one second get keys of their own. A redelivery of an event filed before that
carries a key up to a second above the one its record was filed under, and a page or own-record
lookup by the new key alone could miss it. So a conversation item written before (no ``cm``
attribute) is read with a *coarse mark*: the highest key any of its records can have (inline,
paged, own), until they all expire; every item this layout writes carries ``cm`` (``0``: no
coarse record left). An event whose second's key (:func:`second_key`) is at or below the coarse
mark looks from that key up (``Lookup.low``): the pages between the two keys, own records by
its digest as always. Events after the mark's second are not affected: a deploy costs a few
more lookups for a day, and nothing for a conversation that starts after it.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from sessions import codec
from sessions.keys import EVENT_MARK, SEP
from sessions.store import FAILED, EventRecord, StoredItem, StoredState, Tombstone

Item = dict[str, Any]

KB = 1024
ENTRY = struct.Struct(">8sHIH")
"""An inline record, 16 bytes: the first 8 bytes of the event id's SHA-256; its event's key
(48 bits, in two parts); until when it deduplicates, in units of :data:`UNIT` seconds after
the event's time (rounded up: a record may deduplicate up to a minute longer than asked, never
shorter). A record of unknown time keeps its commit time (epoch seconds) in the key's place,
flagged by :data:`UNKNOWN`, and its expiry in units after that. A record of known time does
not keep its commit time: it reports its event's time instead."""
#: The flag of a record of unknown time (the key field then holds its commit time).
UNKNOWN = 1 << 47
LEGACY_ENTRY = struct.Struct(">8sII")
"""An inline record of the previous layout (attribute ``ids``): no event key."""
RESPONSE = struct.Struct(">8sIH")
"""An inline recorded response: the event's digest, until when it is served, its length."""
#: Room for inline records a conversation item keeps: when the state leaves less than this
#: in its last KB, the item is allowed one KB more. (Moving the records out every few events
#: costs less than a KB more on every write: a page is one write unit for all of them.)
MIN_ROOM = 4 * ENTRY.size + 32
#: An inline response longer than this goes to a record item with its event.
MAX_INLINE_RESPONSE = 512
#: How long after its last old-layout write a conversation item may still have old-layout
#: record items (event records and dead letters) that its load must look at.
LEGACY_SIBLINGS = 15 * 86_400
#: How far the platform's clock may run ahead of ours, for records of older layouts only
#: (they kept our commit time, not the event's).
MAX_SKEW = 900
#: Keys are below this (47 bits: the year 6429): a time beyond it is filed as unknown.
MAX_KEY = UNKNOWN
#: The unit of an inline record's expiry, in seconds.
UNIT = 64
#: Sort-key infix of a page (digests are hex, so no record item's name starts with it).
PAGE = "p."
#: How far below its page's highest key a late record may still be paged with it, in keys
#: (ms): a lookup then reads the pages whose highest key is within this of the event's. Ten
#: seconds covers the order in which a burst's events reach the serialised path, and the
#: events of a page mark's own key (a burst of slash commands in one whole second); an event
#: later than that (a retry after a failure) goes to an item of its own, as before.
PAGE_WINDOW = 10_000
#: Attributes of the conversation item besides the state (``kind`` only on old items).
CONVERSATION_KINDS = (None, "state")


class Entry(NamedTuple):
    digest: bytes
    key: int  # the event's time in ms, rounded up; 0: unknown
    expires: int
    committed: int = 0  # kept for records of unknown time only


def _span(entry: Entry) -> int:
    """The record's life in :data:`UNIT` s after its event's time (or its commit, if unknown),
    rounded up: more than 65,535 does not fit an inline record (a platform clock 48 days behind
    ours, or a dedup window that long), which then goes to an item of its own."""
    since = entry.key // 1000 if entry.key else entry.committed
    return max(1, -(-(entry.expires - since) // UNIT))


def _pack_entry(entry: Entry) -> bytes:
    field = entry.key or UNKNOWN | min(entry.committed, 0xFFFFFFFF)
    return ENTRY.pack(entry.digest, field >> 32, field & 0xFFFFFFFF, _span(entry))


def _unpack_entry(d: bytes, high: int, low: int, span: int) -> Entry:
    field = high << 32 | low
    if field & UNKNOWN:
        committed = field & 0xFFFFFFFF
        return Entry(d, 0, committed + span * UNIT, committed)
    return Entry(d, field, field // 1000 + span * UNIT)


class Response(NamedTuple):
    digest: bytes
    until: int
    body: bytes


class Mark(NamedTuple):
    """Records at or below ``key`` (ms) may be filed elsewhere, until ``expires``."""

    key: int
    expires: int


class Lookup(NamedTuple):
    """Where a redelivery not found inline must look: its own record items, the pages; and
    the lowest key its record may be filed under (its own key, or its second's key where the
    coarse mark covers that: :func:`pages_for` reads the pages from there up to its key)."""

    own: bool
    page: bool
    low: int = 0


def event_key(event_time: float | None) -> int:
    """The event's time as records are filed by it: milliseconds, rounded up (so a time at
    any resolution keeps its order with every other), 0 when unknown. Deterministic: the same
    event time always gives the same key, which is all a redelivery needs."""
    if event_time is None or not math.isfinite(event_time) or event_time <= 0:
        return 0
    key = math.ceil(event_time * 1000)
    return key if key < MAX_KEY else 0


def second_key(event_time: float | None) -> int:
    """The key of the whole second the event happened in: what an earlier layout filed an
    event of that second under when it knew only whole seconds (Slack's ``event_time``). 0
    when the time is unknown."""
    if event_key(event_time) == 0:
        return 0
    assert event_time is not None
    return math.floor(event_time) * 1000


def digest(event_sk: str) -> bytes:
    """The 8 bytes a record keeps of the event id's digest (the sort key's hash)."""
    return bytes.fromhex(event_sk.rsplit(SEP, 1)[1][:16])


def record_sk(channel_sk: str, digest: bytes) -> str:
    """The sort key of a record moved out of the conversation item on its own (its full id
    is not kept inline, so its item is named by the 8 bytes that are)."""
    return f"{channel_sk}{EVENT_MARK}{digest.hex()}"


def page_sk(channel_sk: str, chain: str, hi: int) -> str:
    """The sort key of a page: ordered by its highest key within its chain."""
    return f"{channel_sk}{EVENT_MARK}{PAGE}{chain}.{hi:016d}"


def page_range(channel_sk: str, chain: str, key: int) -> tuple[str, str]:
    """The sort keys between which, in order from the first, lie the pages that may hold a
    key from ``key`` on (:func:`pages_for` says which)."""
    return page_sk(channel_sk, chain, key), f"{channel_sk}{EVENT_MARK}{PAGE}{chain}.~"


def page_hi(page: Item) -> int:
    """A page's highest key, from its name."""
    return int(page["sk"]["S"].rsplit(".", 1)[1])


def pages_for(low: int, high: int, pages: list[Item]) -> list[Item]:
    """Of the pages of a chain from ``low`` on (in order, as :func:`page_range` lists them;
    the first few are enough: see :func:`read_on`), those that may hold a record of a key
    from ``low`` to ``high``: every one whose highest key is within :data:`PAGE_WINDOW` above
    the range, and the first past that if a key of the range may be there (no page within
    the window above it: then its record, if paged, is in the first page above it)."""
    near = [p for p in pages if low <= page_hi(p) <= high + PAGE_WINDOW]
    if near and low == high:
        return near
    return near + [p for p in pages if page_hi(p) > high + PAGE_WINDOW][:1]


def read_on(high: int, pages: list[Item]) -> bool:
    """Whether a lookup up to the key ``high`` that read ``pages`` (in order from its lowest
    key on) must read further: none yet, or the last is still within the window."""
    return not pages or page_hi(pages[-1]) <= high + PAGE_WINDOW


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def key_of(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def num(item: Item, name: str, default: int = 0) -> int:
    return int(item[name]["N"]) if name in item else default


def size(item: Item) -> int:
    """An item's size by DynamoDB's rules, for the attribute types this store writes."""
    total = 0
    for name, value in item.items():
        ((kind, data),) = value.items()
        if kind == "N":
            digits = data.lstrip("-").replace(".", "").strip("0") or "0"
            length = (len(digits) + 1) // 2 + 1
        elif kind == "B":
            length = len(data)
        else:
            length = len(str(data).encode())
        total += len(name) + length
    return total


def billed_kb(length: int) -> int:
    return max(1, -(-length // KB))


def parse(item: Item) -> StoredItem | None:
    """A stored item as a record (``None``: a page, or a conversation item with no state,
    which only points at dead letters)."""
    get = functools.partial(num, item)

    def blob(name: str) -> bytes | None:
        return bytes(item[name]["B"]) if name in item else None

    kind = item.get("kind", {}).get("S")
    if kind == "event":
        return EventRecord(
            version=get("version"),
            committed_at=get("updated_at"),
            expires_at=get("expires_at"),
            response=blob("response"),
            response_expires_at=get("response_expires_at"),
            outbox=blob("outbox"),
            sent_at=get("sent_at") if "sent_at" in item else None,
            status=item["status"]["S"] if "status" in item else "done",
            error=item["error"]["S"] if "error" in item else None,
            payload=blob("payload"),
            generation=get("gen"),
            claimed_at=get("claimed_at") if "claimed_at" in item else None,
        )
    if kind == "tombstone":
        return Tombstone(generation=get("gen"), expires_at=get("expires_at"))
    if kind == "page" or "state" not in item:
        return None
    return StoredState(
        version=get("version"),
        blob=blob("state") or b"",
        expires_at=get("idle_at", get("expires_at")),
        updated_at=get("updated_at"),
        enterprise=item["enterprise"]["S"] if "enterprise" in item else None,
        generation=get("gen"),
    )


def _entries(item: Item) -> tuple[Entry, ...]:
    packed = bytes(item["ev"]["B"]) if "ev" in item else b""
    found = [_unpack_entry(*fields) for fields in ENTRY.iter_unpack(packed)]
    if "ids" in item:  # the previous layout: no event key, the commit time
        legacy = LEGACY_ENTRY.iter_unpack(bytes(item["ids"]["B"]))
        found += [Entry(d, 0, x, c) for d, c, x in legacy]
    return tuple(found)


def _responses(item: Item) -> tuple[Response, ...]:
    packed = bytes(item["rs"]["B"]) if "rs" in item else b""
    found = []
    at = 0
    while at < len(packed):
        d, until, length = RESPONSE.unpack_from(packed, at)
        at += RESPONSE.size
        found.append(Response(d, until, packed[at : at + length]))
        at += length
    return tuple(found)


def _record(
    entries: tuple[Entry, ...], responses: tuple[Response, ...], d: bytes, generation: int
) -> EventRecord | None:
    for entry in entries:
        if entry.digest == d:
            response = next((r for r in responses if r.digest == d), None)
            return EventRecord(
                version=0,
                committed_at=entry.committed or entry.key // 1000,
                expires_at=entry.expires,
                response=response.body if response else None,
                response_expires_at=response.until if response else 0,
                generation=generation,
            )
    return None


def _pack(entries: list[Entry], responses: list[Response]) -> Item:
    item: Item = {}
    if entries:
        item["ev"] = {"B": b"".join(_pack_entry(e) for e in entries)}
    if responses:
        item["rs"] = {"B": b"".join(RESPONSE.pack(r.digest, r.until, len(r.body)) + r.body
                                    for r in responses)}  # fmt: skip
    return item


def _late_mark(entry: Entry) -> int:
    """The own-record mark that covers a record moved out on its own: its key, or for a
    record of unknown time an upper bound of any key its event can have (from its commit
    time; else every key)."""
    if entry.key:
        return entry.key
    return min(MAX_KEY, (entry.committed + MAX_SKEW) * 1000) if entry.committed else MAX_KEY


@dataclass(frozen=True, slots=True)
class Conversation:
    """The conversation item as a load saw it: the handle passed back to ``commit``."""

    item: Item | None
    state: StoredState | None
    entries: tuple[Entry, ...] = ()
    responses: tuple[Response, ...] = ()
    own: Mark | None = None
    chain: str = ""
    #: Records with keys up to this are in the chain's pages (``pm``; 0: no page).
    paged: int = 0
    #: The event's record was read from an item of its own (a dead letter being replayed):
    #: the commit replaces it there.
    sibling: bool = False
    #: Records at or below this key may be filed under their event's whole second (written
    #: before Slack's finer times: see the module docstring), until it expires.
    coarse: Mark | None = None

    @classmethod
    def of(cls, item: Item | None) -> Conversation:
        if item is None:
            return cls(item=None, state=None)
        state = parse(item)
        own = None
        if "kind" in item:  # written before inline records: its record items count
            updated = num(item, "updated_at")
            own = Mark((updated + MAX_SKEW) * 1000, updated + LEGACY_SIBLINGS)
        elif "sp" in item:  # the previous spill mark: our commit time, in seconds
            own = Mark((num(item, "sp") + MAX_SKEW) * 1000, num(item, "spx"))
        if "om" in item:
            own = _join(own, Mark(num(item, "om"), num(item, "omx")))
        entries = _entries(item)
        if "cm" in item:
            coarse = Mark(num(item, "cm"), num(item, "cmx")) if num(item, "cm") else None
        else:
            # Written before finer times: any of its records may be filed by whole seconds.
            keys = [e.key for e in entries] + [num(item, "pm"), num(item, "om")]
            coarse = Mark(max(keys), num(item, "expires_at")) if max(keys) else None
        return cls(
            item=item,
            state=state if isinstance(state, StoredState) else None,
            entries=entries,
            responses=_responses(item),
            own=own,
            chain=bytes(item["pc"]["B"]).hex() if "pc" in item else "",
            paged=num(item, "pm"),
            coarse=coarse,
        )

    @property
    def exists(self) -> bool:
        return self.item is not None

    @property
    def generation(self) -> int:
        return self.state.generation if self.state else 0

    def record(self, d: bytes) -> EventRecord | None:
        """The inline record of the event with this digest, if any."""
        return _record(self.entries, self.responses, d, self.generation)

    def lookup(self, key: int, second: int = 0) -> Lookup:
        """Must an event of this key, not recorded inline, look outside the item? Its own
        record items if it may have been filed there; the chain's pages if it may be paged.
        ``second``: the key of its whole second (:func:`second_key`), under which an earlier
        layout may have filed it, if the coarse mark covers it."""
        coarse = self.coarse is not None and 0 < second < key and second <= self.coarse.key
        low = second if coarse else key
        own = self.own is not None and (key == 0 or low <= self.own.key)
        page = key != 0 and low <= self.paged
        return Lookup(own=own, page=page, low=low)

    def needs_tombstone(self, event_time: float | None) -> bool:
        """Whether a tombstone could postdate the event: only if the event happened before
        this conversation item was created (its ``gen`` is the creating event's time, or the
        generation of the tombstone it was written under)."""
        return (
            self.state is not None
            and event_time is not None
            and round(event_time * 1000) < self.state.generation
        )

    def full(self) -> bool:
        """Whether the item as read has no room for one more record: then every record moves
        out with the next write. A function of the item alone (see the module docstring)."""
        assert self.item is not None
        more = ENTRY.size + (0 if "ev" in self.item else len("ev"))
        return size(self.item) + more > _target(self.item)


#: What a conversation item holds besides its state: records and marks.
_RECORDS = ("ev", "ids", "rs")
_MARKS = ("om", "omx", "pc", "pm", "sp", "spx", "cm", "cmx")


def _target(item: Item) -> int:
    """The bytes the item may take: its KB with the state (and :data:`MIN_ROOM`), whole."""
    base = {k: v for k, v in item.items() if k not in _RECORDS and k not in _MARKS}
    return billed_kb(size(base) + MIN_ROOM) * KB


def _join(a: Mark | None, b: Mark | None) -> Mark | None:
    if a is None or b is None:
        return a or b
    return Mark(max(a.key, b.key), max(a.expires, b.expires))


def page_record(page: Item, d: bytes, generation: int) -> EventRecord | None:
    """The record of the event with this digest in a page, if any."""
    return _record(_entries(page), _responses(page), d, generation)


def paged_record(pages: list[Item], d: bytes, generation: int) -> EventRecord | None:
    """The record of the event with this digest in any of ``pages`` (the latest to expire:
    an event applied again after its record expired has a later one)."""
    found = [r for page in pages if (r := page_record(page, d, generation)) is not None]
    return max(found, key=lambda r: r.expires_at, default=None)


@dataclass(frozen=True, slots=True)
class Placement:
    """A commit's writes: ``moved`` (pages and records moved out on their own, plain writes
    made first), then ``item`` (the conversation item, conditioned on the one the load saw)
    with ``records`` (the event's own record item, if it does not go inline) in the same
    atomic write."""

    item: Item
    moved: list[Item]
    records: list[tuple[str, EventRecord]]


def event_item(pk: str, sk: str, event: EventRecord) -> Item:
    """A record item of its own."""
    item = key_of(pk, sk) | {
        "kind": {"S": "event"},
        "version": n(event.version),
        "expires_at": n(event.expires_at),
        "updated_at": n(event.committed_at),
    }
    if event.response is not None:
        item["response"] = {"B": event.response}
        item["response_expires_at"] = n(event.response_expires_at)
    if event.outbox is not None:
        item["outbox"] = {"B": event.outbox}
    if event.sent_at is not None:
        item["sent_at"] = n(event.sent_at)
    if event.failed:
        item["status"] = {"S": FAILED}
        item["error"] = {"S": event.error or "unknown error"}
    if event.payload is not None:
        item["payload"] = {"B": event.payload}
    if event.generation:
        item["gen"] = n(event.generation)
    return item


def state_item(pk: str, sk: str, state: StoredState) -> Item:
    """A conversation item in the oldest layout (kept for tests of that layout)."""
    item = key_of(pk, sk) | {
        "kind": {"S": "state"},
        "version": n(state.version),
        "state": {"B": state.blob},
        "expires_at": n(state.expires_at),
        "updated_at": n(state.updated_at),
    }
    if state.enterprise:
        item["enterprise"] = {"S": state.enterprise}
    if state.generation:
        item["gen"] = n(state.generation)
    return item


def cheaper_blob(blob: bytes, base: int) -> bytes:
    """The state blob, compressed or not, whichever bills fewer KB in an item of ``base``
    other bytes (and keeps room for inline records); compression only when it pays."""
    if billed_kb(base + len(blob) + MIN_ROOM) == 1:
        return blob  # already the least an item bills: the other form cannot bill less
    try:
        if blob[:1] == codec.RAW:
            other = codec.ZLIB + zlib.compress(blob[1:], 6)
        elif blob[:1] == codec.ZLIB:
            other = codec.RAW + zlib.decompress(blob[1:])
        else:
            return blob
    except zlib.error:
        return blob
    if len(other) > codec.MAX_STATE_BYTES:
        return blob
    raw, packed = (blob, other) if blob[:1] == codec.RAW else (other, blob)
    if billed_kb(base + len(packed) + MIN_ROOM) < billed_kb(base + len(raw) + MIN_ROOM):
        return packed
    return raw


def _page_item(
    pk: str, name: str, entries: list[Entry], responses: tuple[Response, ...], generation: int
) -> Item:
    digests = {e.digest for e in entries}
    page = key_of(pk, name) | {"kind": {"S": "page"}}
    page |= _pack(entries, [r for r in responses if r.digest in digests])
    page["expires_at"] = n(max(e.expires for e in entries))
    if generation:
        page["gen"] = n(generation)
    return page


class MovedOut(NamedTuple):
    items: list[Item]
    page: Mark | None
    own: Mark | None
    #: The digests of the records that stay inline.
    stay: frozenset[bytes]


def _move_out(conversation: Conversation, pk: str, sk: str, chain: str) -> MovedOut:
    """The records of the item as read move out: those above the page mark, and the late
    ones (at or below it) within :data:`PAGE_WINDOW` of the page's name, to one page of
    ``chain``; the later ones and those of unknown time to items of their own. Except the
    records of the highest key, when there are lower ones above the mark to page and they
    are at most half of the item's: they stay inline, so that more events of that key (whole
    seconds: a burst of slash commands in one second) find the page mark below them and
    need no lookup."""
    entries, responses = conversation.entries, conversation.responses
    generation = num(conversation.item or {}, "gen")
    floor = conversation.paged
    known = [e for e in entries if e.key]
    above = sorted((e for e in known if e.key > floor), key=lambda e: (e.key, e.digest))
    top = [e for e in above if e.key == above[-1].key] if above else []
    stay = frozenset[bytes]()
    if len(top) < len(above) and 2 * len(top) <= len(entries):
        stay = frozenset(e.digest for e in top)
        known = [e for e in known if e.digest not in stay]
    # The page's name: its highest key, above the page mark (strictly: no two pages of a
    # chain share a name, even when every record in one is late).
    hi = max([floor + 1] + [e.key for e in known])
    fresh = [e for e in known if e.key > floor or hi - e.key <= PAGE_WINDOW]
    late = [e for e in entries if e not in fresh and e.digest not in stay]
    items: list[Item] = []
    page_mark = own_mark = None
    if fresh:
        fresh.sort(key=lambda e: (e.key, e.digest))
        page = _page_item(pk, page_sk(sk, chain, hi), fresh, responses, generation)
        items.append(page)
        page_mark = Mark(hi, num(page, "expires_at"))
    for entry in sorted(late):
        record = _record((entry,), responses, entry.digest, generation)
        assert record is not None
        items.append(event_item(pk, record_sk(sk, entry.digest), record))
        own_mark = _join(own_mark, Mark(_late_mark(entry), entry.expires))
    return MovedOut(items, page_mark, own_mark, stay)


def place(
    conversation: Conversation,
    *,
    pk: str,
    sk: str,
    state: StoredState | None,
    event_sk: str,
    event: EventRecord,
    key: int,
    now: int,
    new_chain: str,
    move: bool = True,
) -> Placement:
    """The writes of a commit: the conversation item with the event's record inline (in an
    item of its own when it carries more than dedup needs: a dead letter's payload, an outbox,
    a large response), after moving every record out when the item as read is full. A record
    that does not fit beside a grown state goes inline all the same, that once: the next write
    finds the item full. ``new_chain`` (hex) names a page chain if one starts here (the
    caller's random name). ``state`` ``None``: a dead letter (the state stays as it is, the
    record goes to its own item). ``move=False``: never move records out (the later records
    of a group commit, placed on an item the read did not see: what moves out must be a
    function of the item as read). Pure: the same arguments always give the same writes."""
    d = digest(event_sk)
    own = conversation.own if conversation.own and conversation.own.expires > now else None
    coarse = conversation.coarse
    coarse = coarse if coarse is not None and coarse.expires > now else None
    chain, paged = conversation.chain or new_chain, conversation.paged
    # The item lives as long as its pages' records (its chain goes with it).
    ttl = num(conversation.item, "expires_at") if conversation.paged and conversation.item else 0
    entries = [e for e in conversation.entries if e.expires > now and e.digest != d]
    responses = [r for r in conversation.responses if r.until > now and r.digest != d]
    moved: list[Item] = []
    if move and conversation.exists and conversation.entries and conversation.full():
        out = _move_out(conversation, pk, sk, chain)
        moved, own = out.items, _join(own, out.own)
        if out.page is not None:
            paged, ttl = out.page.key, max(ttl, out.page.expires)
        entries = [e for e in entries if e.digest in out.stay]
        responses = [r for r in responses if r.digest in out.stay]
    records: list[tuple[str, EventRecord]] = []
    item = conversation.item
    if state is None:
        # A dead letter: the state stays as it is, the item points at the record.
        base = dict(item) if item is not None else key_of(pk, sk)
        base.pop("kind", None)
        if conversation.state is not None and "idle_at" not in base:
            base["idle_at"] = base["expires_at"]
        base.setdefault("version", n(0))
        if conversation.state is None:  # a pointer: the state's own time stays as it was
            base["updated_at"] = n(now)
            base["gen"] = n(event.generation)
        inline = False
    else:
        base = key_of(pk, sk) | {"version": n(state.version), "updated_at": n(state.updated_at)}
        if state.enterprise:
            base["enterprise"] = {"S": state.enterprise}
        if state.generation:
            base["gen"] = n(state.generation)
        base["idle_at"] = n(state.expires_at)
        base["expires_at"] = n(state.expires_at)
        base["state"] = {"B": b""}
        base["state"] = {"B": cheaper_blob(state.blob, size(base))}
        inline = (
            not conversation.sibling
            and event.outbox is None
            and event.payload is None
            and len(event.response or b"") <= MAX_INLINE_RESPONSE
        )
    for name in _RECORDS + _MARKS:
        base.pop(name, None)
    base["w"] = {"B": bytes(8)}  # the write's token, counted in its size (set by the caller)
    mine = Entry(d, key, event.expires_at, event.committed_at)
    inline = inline and _span(mine) <= 0xFFFF
    if inline:
        entries.append(mine)
        if event.response is not None and event.response_expires_at > now:
            responses.append(Response(d, event.response_expires_at, event.response))
    else:
        records.append((event_sk, event))
        own = _join(own, Mark(key or MAX_KEY, event.expires_at))
    new = base | _pack(entries, responses)
    if own is not None:
        new["om"], new["omx"] = n(own.key), n(own.expires)
    if paged:
        new["pc"], new["pm"] = {"B": bytes.fromhex(chain)}, n(paged)
    new["cm"] = n(coarse.key if coarse else 0)  # also says: written by this layout
    if coarse:
        new["cmx"] = n(coarse.expires)
    ttl = max([ttl, num(new, "idle_at"), own.expires if own else 0] + [e.expires for e in entries])
    new["expires_at"] = n(ttl)
    if num(new, "idle_at") == ttl or "state" not in new:
        new.pop("idle_at", None)
    return Placement(item=new, moved=moved, records=records)


def listed(item: Item) -> list[tuple[str, EventRecord]]:
    """The records a conversation item or a page holds inline, each named as if it were an
    item of its own (``<channel>#evt#<digest>``)."""
    kind = item.get("kind", {}).get("S")
    if kind not in CONVERSATION_KINDS and kind != "page":
        return []
    channel = item["sk"]["S"].split(EVENT_MARK, 1)[0]
    entries, responses, generation = _entries(item), _responses(item), num(item, "gen")
    return [
        (record_sk(channel, e.digest), record)
        for e in entries
        if (record := _record(entries, responses, e.digest, generation)) is not None
    ]
