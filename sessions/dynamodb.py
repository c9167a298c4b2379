"""The production store: one DynamoDB table (``pk``/``sk`` strings, TTL on ``expires_at``).

This is the only module of ``sessions`` that imports boto3, and it does so lazily: the client
is passed in or built on first use, then kept for warm invocations.

Per turn (the usual one: the conversation exists and its item has room): ``load`` is one
consistent ``GetItem`` of the conversation item, which holds the state and the conversation's
recent event records inline, and ``commit`` one ``PutItem`` conditioned on the very item the
load saw (version, write time, generation). A lost race or a duplicate costs no extra read:
the refused ``PutItem`` returns the item (``ALL_OLD``).

A ``TransactWriteItems`` only where one item cannot do: creating a conversation item (with an
``Update`` of the user's record that refuses it if a delete came at or after the event, and
counts the creation for a delete running meanwhile), a record that goes to a sibling item
(the oldest inline record moved out to make room, a dead letter, a sent-mark outbox, a
response too large to keep inline), and an effect's claim. A second read only where the item
says one is needed (``_Conversation.needs_sibling``/``needs_tombstone``).

Item layout (``pk`` user, ``sk`` channel): ``state`` (codec blob, compressed only when that
lowers the billed KB), ``version``, ``updated_at``, ``expires_at`` (TTL: the latest of the
state's idle expiry, ``idle_at`` when different, and the records'), ``gen`` (the time in ms of
the event that created the item, or of the tombstone it was written under), ``ids`` (inline
records, ``ENTRY`` each), ``rs`` (inline responses), ``sp``/``spx`` (events kept in sibling
items happened at or before ``sp``, until ``spx``). Items written before inline records
(``kind = "state"``) are read as having sibling records up to their last write.

Every botocore failure leaves this module as one of ours: ``ClientError`` by its code, and the
rest (no credentials, endpoint unreachable, read timeout) as :class:`StoreUnavailableError`.
"""

from __future__ import annotations

import functools
import os
import struct
import threading
import time
import weakref
import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from sessions import codec
from sessions.codec import ITEM_LIMIT
from sessions.errors import (
    ConflictError,
    DuplicateEventError,
    ItemTooLargeError,
    SessionError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)
from sessions.keys import EVENT_MARK, SEP, TOMBSTONE_SK, ConversationKey, UserKey
from sessions.store import FAILED, EventRecord, Snapshot, StoredItem, StoredState, Tombstone

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

Item = dict[str, Any]

_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
}
#: ``UnprocessedKeys`` (throttling inside a BatchGetItem) is retried this many times with
#: backoff, then the load fails as unavailable: the webhook's deadline bounds the wait.
UNPROCESSED_RETRIES = 3
#: A user delete is tried again this many times when conversations keep changing under it.
DELETE_ATTEMPTS = 8


ENTRY = struct.Struct(">8sII")
"""An inline event record: the first 8 bytes of the event id's SHA-256, when it was
committed and until when it deduplicates (epoch seconds)."""
RESPONSE = struct.Struct(">8sIH")
"""An inline recorded response: the event's digest, until when it is served, its length."""
KB = 1024
#: Room for inline records a conversation item keeps: when the state leaves less than this
#: in its last KB, the item is allowed one KB more.
MIN_ROOM = 8 * ENTRY.size
#: Bytes ``sp`` and ``spx`` take at most (names and 10-digit numbers).
SPILL_ATTRIBUTES = 2 * (3 + 6)
#: An inline response longer than this goes to a sibling record with its event.
MAX_INLINE_RESPONSE = 512
#: How long after its last old-layout write a conversation item may still have old-layout
#: sibling records (event records and dead letters) that its load must look at.
LEGACY_SIBLINGS = 15 * 86_400
#: Attributes of the conversation item besides the state (``kind`` only on old items).
_CONVERSATION_KINDS = (None, "state")


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _key(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _num(item: Item, name: str, default: int = 0) -> int:
    return int(item[name]["N"]) if name in item else default


def _digest(event_sk: str) -> bytes:
    """The 8 bytes an inline record keeps of the event id's digest (the sort key's hash)."""
    return bytes.fromhex(event_sk.rsplit(SEP, 1)[1][:16])


def _size(item: Item) -> int:
    """An item's size by DynamoDB's rules, for the attribute types this store writes."""
    total = 0
    for name, value in item.items():
        ((kind, data),) = value.items()
        if kind == "N":
            digits = data.lstrip("-").replace(".", "").strip("0") or "0"
            size = (len(digits) + 1) // 2 + 1
        elif kind == "B":
            size = len(data)
        else:
            size = len(str(data).encode())
        total += len(name) + size
    return total


def _billed_kb(size: int) -> int:
    return max(1, -(-size // KB))


def _parse(item: Item) -> StoredItem | None:
    """A stored item as a record (``None``: a conversation item with no state, which only
    points at dead letters)."""
    num = functools.partial(_num, item)

    def blob(name: str) -> bytes | None:
        return bytes(item[name]["B"]) if name in item else None

    kind = item.get("kind", {}).get("S")
    if kind == "event":
        return EventRecord(
            version=num("version"),
            committed_at=num("updated_at"),
            expires_at=num("expires_at"),
            response=blob("response"),
            response_expires_at=num("response_expires_at"),
            outbox=blob("outbox"),
            sent_at=num("sent_at") if "sent_at" in item else None,
            status=item["status"]["S"] if "status" in item else "done",
            error=item["error"]["S"] if "error" in item else None,
            payload=blob("payload"),
            generation=num("gen"),
            claimed_at=num("claimed_at") if "claimed_at" in item else None,
        )
    if kind == "tombstone":
        return Tombstone(generation=num("gen"), expires_at=num("expires_at"))
    if "state" not in item:
        return None
    return StoredState(
        version=num("version"),
        blob=blob("state") or b"",
        expires_at=num("idle_at", num("expires_at")),
        updated_at=num("updated_at"),
        enterprise=item["enterprise"]["S"] if "enterprise" in item else None,
        generation=num("gen"),
    )


@dataclass(frozen=True, slots=True)
class _Conversation:
    """The conversation item as a load saw it: the handle passed back to ``commit``."""

    item: Item | None
    state: StoredState | None
    entries: tuple[tuple[bytes, int, int], ...] = ()
    responses: tuple[tuple[bytes, int, bytes], ...] = ()
    #: Sibling records may hold events that happened up to ``spill`` (epoch seconds), until
    #: ``spill_expires``; 0: none.
    spill: int = 0
    spill_expires: int = 0
    legacy: bool = False
    #: The event's record was read from a sibling item (a dead letter being replayed): the
    #: commit replaces it there.
    sibling: bool = False

    @classmethod
    def of(cls, item: Item | None) -> _Conversation:
        if item is None:
            return cls(item=None, state=None)
        state = _parse(item)
        ids = bytes(item["ids"]["B"]) if "ids" in item else b""
        packed = bytes(item["rs"]["B"]) if "rs" in item else b""
        responses = []
        at = 0
        while at < len(packed):
            digest, until, length = RESPONSE.unpack_from(packed, at)
            at += RESPONSE.size
            responses.append((digest, until, packed[at : at + length]))
            at += length
        legacy = "kind" in item  # written before inline records: its siblings count
        updated = _num(item, "updated_at")
        return cls(
            item=item,
            state=state if isinstance(state, StoredState) else None,
            entries=tuple(ENTRY.iter_unpack(ids)),
            responses=tuple(responses),
            # Old-layout records were all committed by the item's last old-layout write.
            spill=_num(item, "sp") if not legacy else updated,
            spill_expires=_num(item, "spx") if not legacy else updated + LEGACY_SIBLINGS,
            legacy=legacy,
        )

    @property
    def exists(self) -> bool:
        return self.item is not None

    def record(self, digest: bytes, generation: int) -> EventRecord | None:
        """The inline record of the event with this digest, if any."""
        for entry, committed, expires in self.entries:
            if entry == digest:
                response = next((r for d, _, r in self.responses if d == digest), None)
                until = next((u for d, u, _ in self.responses if d == digest), 0)
                return EventRecord(
                    version=0,
                    committed_at=committed,
                    expires_at=expires,
                    response=response,
                    response_expires_at=until,
                    generation=generation,
                )
        return None

    def needs_sibling(self, event_time: float | None) -> bool:
        """Whether the event may be recorded in a sibling item instead of inline."""
        return self.spill > 0 and (event_time is None or event_time <= self.spill)

    def needs_tombstone(self, event_time: float | None) -> bool:
        """Whether a tombstone could postdate the event: only if the event happened before
        this conversation item was created (its ``gen`` is the creating event's time, or the
        generation of the tombstone it was written under)."""
        return (
            self.state is not None
            and event_time is not None
            and round(event_time * 1000) < self.state.generation
        )


def _state_item(key: ConversationKey, state: StoredState) -> Item:
    """A conversation item in the old layout (kept for the contract suite's fixtures)."""
    item = _key(key.pk, key.sk) | {
        "kind": {"S": "state"},
        "version": _n(state.version),
        "state": {"B": state.blob},
        "expires_at": _n(state.expires_at),
        "updated_at": _n(state.updated_at),
    }
    if state.enterprise:
        item["enterprise"] = {"S": state.enterprise}
    if state.generation:
        item["gen"] = _n(state.generation)
    return item


def _event_item(pk: str, sk: str, event: EventRecord) -> Item:
    item = _key(pk, sk) | {
        "kind": {"S": "event"},
        "version": _n(event.version),
        "expires_at": _n(event.expires_at),
        "updated_at": _n(event.committed_at),
    }
    if event.response is not None:
        item["response"] = {"B": event.response}
        item["response_expires_at"] = _n(event.response_expires_at)
    if event.outbox is not None:
        item["outbox"] = {"B": event.outbox}
    if event.sent_at is not None:
        item["sent_at"] = _n(event.sent_at)
    if event.failed:
        item["status"] = {"S": FAILED}
        item["error"] = {"S": event.error or "unknown error"}
    if event.payload is not None:
        item["payload"] = {"B": event.payload}
    if event.generation:
        item["gen"] = _n(event.generation)
    return item


def _cheaper_blob(blob: bytes, base: int) -> bytes:
    """The state blob, compressed or not, whichever bills fewer KB in an item of ``base``
    other bytes (and keeps room for inline records); compression only when it pays."""
    if _billed_kb(base + len(blob) + MIN_ROOM) == 1:
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
    if _billed_kb(base + len(packed) + MIN_ROOM) < _billed_kb(base + len(raw) + MIN_ROOM):
        return packed
    return raw


def _convert(exc: Exception, table: str) -> SessionError | None:
    """A botocore error as ours (the caller raises it ``from exc``); ``None`` for anything
    that is not botocore's (a bug of ours must surface as itself)."""
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    if isinstance(exc, ParamValidationError):
        return StoreError(f"DynamoDB request rejected by botocore: {exc}")
    if isinstance(exc, BotoCoreError):
        # No credentials, endpoint unreachable, connect or read timeout: may heal.
        return StoreUnavailableError(f"DynamoDB unreachable: {type(exc).__name__}: {exc}")
    if not isinstance(exc, ClientError):
        return None
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    message = error.get("Message", str(exc))
    if code in _RETRYABLE:
        return StoreUnavailableError(f"DynamoDB {code}: {message}")
    if code == "ResourceNotFoundException":
        return StoreConfigError(f"DynamoDB table {table!r} not found: {message}", detail=code)
    if code == "ValidationException" and "item size" in message.lower():
        return ItemTooLargeError(f"DynamoDB refused the item: {message}", size=0, limit=ITEM_LIMIT)
    return StoreError(f"DynamoDB {code or type(exc).__name__}: {message}")


def _same(state: StoredState | None, expected: StoredState | None) -> bool:
    if state is None or expected is None:
        return state is None and expected is None
    return (state.version, state.updated_at, state.generation) == (
        expected.version,
        expected.updated_at,
        expected.generation,
    )


def _record_condition(now: int) -> dict[str, Any]:
    """A record is written only if none is, or the one there expired (TTL has not removed
    it yet) or is a dead letter (a later successful run of the same event replaces it)."""
    return {
        "ConditionExpression": (
            "attribute_not_exists(pk) OR expires_at <= :now OR #status = :failed"
        ),
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":now": _n(now), ":failed": {"S": FAILED}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _sibling_sk(key: ConversationKey, digest: bytes) -> str:
    """The sort key of a record moved out of the conversation item (its full id is not
    kept inline, so its own item is named by the 8 bytes that are)."""
    return f"{key.sk}{EVENT_MARK}{digest.hex()}"


def _with_records(
    base: Item,
    entries: list[tuple[bytes, int, int]],
    responses: list[tuple[bytes, int, bytes]],
) -> Item:
    item = dict(base)
    if entries:
        item["ids"] = {"B": b"".join(ENTRY.pack(*e) for e in entries)}
    if responses:
        item["rs"] = {"B": b"".join(RESPONSE.pack(d, u, len(r)) + r for d, u, r in responses)}
    return item


class DynamoDBStore:
    """DynamoDB implementation of :class:`sessions.store.Store`.

    Args:
        table: the table name.
        client: a boto3 DynamoDB client; built on first use when omitted (honouring
            ``AWS_ENDPOINT_URL_DYNAMODB``), with short timeouts that fit a 3 s webhook deadline.
    """

    def __init__(
        self, table: str, *, client: DynamoDBClient | None = None, capacity: bool = True
    ) -> None:
        self.table = table
        self._client = client
        self._capacity = capacity
        self._meter: _CapacityMeter | None = None
        if client is not None and capacity:
            self._watch_capacity(client)

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = make_client()
            if self._capacity:
                self._watch_capacity(self._client)
        return self._client

    # -- capacity, as DynamoDB reports it (for the turn's metrics) --------------------------

    def _watch_capacity(self, client: Any) -> None:
        self._meter = _CapacityMeter.on(client)

    def take_capacity(self) -> tuple[float, float]:
        """Read and write capacity units DynamoDB reported for this thread's requests on the
        store's client since the last call (a conditional write that failed is billed but
        not reported)."""
        return self._meter.take() if self._meter is not None else (0.0, 0.0)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:
            error = _convert(exc, self.table)
            if error is None:
                raise
            raise error from exc

    def _get(self, key: ConversationKey) -> Item | None:
        out = self._call(
            "get_item",
            TableName=self.table,
            Key=_key(key.pk, key.sk),
            ConsistentRead=True,
        )
        item: Item | None = out.get("Item")
        return item

    def _batch_get(self, pk: str, sks: list[str]) -> dict[str, Item]:
        """One consistent ``BatchGetItem`` of the user's ``sks`` (retrying unprocessed keys)."""
        keys = [_key(pk, sk) for sk in sks]
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        found: dict[str, Item] = {}
        delay = 0.02
        for retry in range(UNPROCESSED_RETRIES + 1):
            out = self._call("batch_get_item", RequestItems=request)
            for item in out.get("Responses", {}).get(self.table, []):
                found[item["sk"]["S"]] = item
            # Keys left unprocessed under throttling: retry them (more requests only then).
            request = dict(out.get("UnprocessedKeys") or {})
            if not request:
                break
            if retry == UNPROCESSED_RETRIES:
                raise StoreUnavailableError(
                    f"DynamoDB left keys unprocessed after {UNPROCESSED_RETRIES} retries"
                )
            time.sleep(delay)
            delay *= 2
        return found

    def load(
        self,
        key: ConversationKey,
        event_sk: str | None,
        *,
        event_time: float | None = None,
        exact: bool = False,
    ) -> Snapshot:
        """One consistent ``GetItem`` of the conversation item, which holds the state and the
        conversation's recent event records inline. A second read (one ``BatchGetItem``) only
        when the item says it is needed: the event may be recorded in a sibling item (a
        spilled record, a dead letter, an outbox), or it happened before the item was created
        and a delete may lie in between (the tombstone). ``exact``: state, record and
        tombstone in one ``BatchGetItem``, always."""
        if exact:
            sks = [key.sk, TOMBSTONE_SK] + ([event_sk] if event_sk else [])
            found = self._batch_get(key.pk, sks)
            conversation = _Conversation.of(found.get(key.sk))
        else:
            found = {}
            conversation = _Conversation.of(self._get(key))
        event: EventRecord | None = None
        if event_sk:
            event = conversation.record(
                _digest(event_sk), conversation.state.generation if conversation.state else 0
            )
        if not exact and event_sk and event is None:
            more = []
            if conversation.needs_sibling(event_time):
                # Its own record, or one moved out of the item (named by the inline digest).
                more += [event_sk, _sibling_sk(key, _digest(event_sk))]
            if conversation.needs_tombstone(event_time):
                more.append(TOMBSTONE_SK)
            if more:
                found = self._batch_get(key.pk, more)
        if event is None and event_sk:
            for sk in (event_sk, _sibling_sk(key, _digest(event_sk))):
                record = _parse(found[sk]) if sk in found else None
                if isinstance(record, EventRecord):
                    event = record
                    conversation = replace(conversation, sibling=True)
                    break
        stone = _parse(found[TOMBSTONE_SK]) if TOMBSTONE_SK in found else None
        return Snapshot(
            state=conversation.state,
            event=event,
            tombstone=stone if isinstance(stone, Tombstone) else None,
            handle=conversation,
        )

    def commit(
        self,
        key: ConversationKey,
        *,
        expected: StoredState | None,
        state: StoredState | None,
        event_sk: str,
        event: EventRecord,
        tombstone: Tombstone | None,
        now: int,
        loaded: Snapshot | None = None,
        event_time: float | None = None,
    ) -> None:
        """One conditional ``PutItem`` of the conversation item with the event's record
        inline, when the conversation exists and its item has room (the usual turn). A
        ``TransactWriteItems`` otherwise: with a ``ConditionCheck`` that the user's tombstone
        predates the event when the commit creates the conversation; with sibling records
        when a record goes to its own item (a dead letter, a sent-mark outbox, a large
        response, or the oldest inline record moved out to make room)."""
        if state is None and not event.failed:
            # A claim (``Sessions.claim``): a record of its own, checked against the tombstone.
            self._commit_record(key, event_sk, event, tombstone, now)
            return
        handle = loaded.handle if loaded is not None else None
        if not isinstance(handle, _Conversation):
            handle = _Conversation.of(self._get(key))
            if not _same(handle.state, expected):
                raise ConflictError("conversation version moved", current=handle.state)
        event_ms = round(event_time * 1000) if event_time is not None else now * 1000
        digest = _digest(event_sk)
        inline = handle.record(digest, 0)
        if inline is not None and inline.expires_at > now:
            raise DuplicateEventError("event already committed", record=inline)
        creating = handle.state is None or handle.state.expires_at <= now
        item, siblings = self._layout(key, handle, state, digest, event_sk, event, now, event_time)
        # This write's token: the next commit is conditioned on it.
        item["w"] = {"B": os.urandom(8)}
        if creating:
            item["gen"] = _n(max(_num(item, "gen"), event_ms))
            siblings = [
                (sk, replace(record, generation=max(record.generation, event_ms)))
                for sk, record in siblings
            ]
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": item,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if handle.item is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            # The very item the load saw, by the token every write leaves in it (a version
            # repeats when an item is removed, by a delete or TTL, and recreated). One clause:
            # on DynamoDB Local each clause of a condition costs time. Items of the old layout
            # have no token: their version, write time and generation say it.
            if "w" in handle.item:
                values = {":w": handle.item["w"]}
                condition = "w = :w"
            else:
                values = {":v": handle.item["version"], ":u": handle.item["updated_at"]}
                condition = "version = :v AND updated_at = :u"
                if "gen" in handle.item:
                    values[":g"] = handle.item["gen"]
                    condition += " AND gen = :g"
                else:
                    condition += " AND attribute_not_exists(gen)"
            put["ConditionExpression"] = condition
            put["ExpressionAttributeValues"] = values
        if not creating and not siblings:
            try:
                self.client.put_item(**put)
            except Exception as exc:
                old = (getattr(exc, "response", None) or {}).get("Item") or {}
                if old.get("w") == item["w"]:
                    # Applied by the attempt whose answer was lost (botocore's retry then
                    # fails the condition; a transaction has a ClientRequestToken for that).
                    return
                error = self._refused(exc, digest)
                if error is None:
                    raise
                raise error from exc
            return
        roles = ["state"]
        actions: list[dict[str, Any]] = [{"Put": put}]
        for sk, record in siblings:
            sibling: dict[str, Any] = {
                "TableName": self.table,
                "Item": _event_item(key.pk, sk, record),
            }
            if sk == event_sk:
                roles.append("event")
                sibling |= _record_condition(now)
            else:
                roles.append("moved")
            actions.append({"Put": sibling})
        if creating:
            # The user's record (where a delete leaves its tombstone) counts the conversations
            # created, so that a delete notices one created while it runs; and it refuses the
            # creation if a delete happened at or after the event.
            roles.append("tombstone")
            actions.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _key(key.pk, TOMBSTONE_SK),
                        "UpdateExpression": "ADD created :one "
                        "SET expires_at = if_not_exists(expires_at, :x)",
                        "ConditionExpression": "attribute_not_exists(gen) OR gen < :ms",
                        "ExpressionAttributeValues": {
                            ":ms": _n(event_ms),
                            ":one": _n(1),
                            ":x": item["expires_at"],
                        },
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            )
        self._transact(actions, roles, digest)

    def _layout(
        self,
        key: ConversationKey,
        handle: _Conversation,
        state: StoredState | None,
        digest: bytes,
        event_sk: str,
        event: EventRecord,
        now: int,
        event_time: float | None,
    ) -> tuple[Item, list[tuple[str, EventRecord]]]:
        """The conversation item to write and the records that go to sibling items."""
        entries = [e for e in handle.entries if e[2] > now and e[0] != digest]
        responses = [r for r in handle.responses if r[1] > now and r[0] != digest]
        spill, spill_expires = (
            (handle.spill, handle.spill_expires) if handle.spill_expires > now else (0, 0)
        )
        siblings: list[tuple[str, EventRecord]] = []
        if state is None:
            # A dead letter: the state stays as it is, the item points at the record.
            base = dict(handle.item) if handle.item is not None else _key(key.pk, key.sk)
            base.pop("kind", None)
            if handle.state is not None and "idle_at" not in base:
                base["idle_at"] = base["expires_at"]
            base.setdefault("version", _n(0))
            if handle.state is None:  # a pointer: the state's own time stays as it was
                base["updated_at"] = _n(now)
                base["gen"] = _n(event.generation)
            inline = False
        else:
            base = _key(key.pk, key.sk) | {
                "version": _n(state.version),
                "updated_at": _n(state.updated_at),
            }
            if state.enterprise:
                base["enterprise"] = {"S": state.enterprise}
            if state.generation:
                base["gen"] = _n(state.generation)
            base["idle_at"] = _n(state.expires_at)
            base["expires_at"] = _n(state.expires_at)
            base["state"] = {"B": b""}
            base["state"] = {"B": _cheaper_blob(state.blob, _size(base))}
            inline = (
                not handle.sibling
                and event.outbox is None
                and event.payload is None
                and len(event.response or b"") <= MAX_INLINE_RESPONSE
            )
        for name in ("ids", "rs", "sp", "spx"):
            base.pop(name, None)
        base["w"] = {"B": bytes(8)}  # the write's token, counted in its size (set by commit)
        # Room for ``sp``/``spx``, which are set once the records are placed.
        target = _billed_kb(_size(base) + MIN_ROOM) * KB - SPILL_ATTRIBUTES
        if inline:
            entries.append((digest, event.committed_at, event.expires_at))
            if event.response is not None and event.response_expires_at > now:
                responses.append((digest, event.response_expires_at, event.response))
            moved = self._room(base, entries, responses, target, digest)
            if moved is None:  # the record itself does not fit: it gets its own item
                entries.pop()
                responses = [r for r in responses if r[0] != digest]
                inline = False
            elif moved:
                out, committed, expires = moved
                response = next(((u, r) for d, u, r in responses if d == out), None)
                responses = [r for r in responses if r[0] != out]
                siblings.append(
                    (
                        _sibling_sk(key, out),
                        EventRecord(
                            version=0,
                            committed_at=committed,
                            expires_at=expires,
                            response=response[1] if response else None,
                            response_expires_at=response[0] if response else 0,
                            generation=_num(base, "gen"),
                        ),
                    )
                )
                # Its event happened at or before it was committed.
                spill = max(spill, committed)
                spill_expires = max(spill_expires, expires)
        if not inline:
            siblings.append((event_sk, event))
            happened = now if event_time is None else -(-event_time // 1)
            spill = max(spill, int(happened))
            spill_expires = max(spill_expires, event.expires_at)
        item = _with_records(base, entries, responses)
        if spill:
            item["sp"] = _n(spill)
            item["spx"] = _n(spill_expires)
        ttl = max([_num(item, "idle_at"), spill_expires] + [e[2] for e in entries])
        item["expires_at"] = _n(ttl)
        if _num(item, "idle_at") == ttl or "state" not in item:
            item.pop("idle_at", None)
        return item, siblings

    @staticmethod
    def _room(
        base: Item,
        entries: list[tuple[bytes, int, int]],
        responses: list[tuple[bytes, int, bytes]],
        target: int,
        digest: bytes,
    ) -> tuple[bytes, int, int] | tuple[()] | None:
        """Make the inline records fit ``target`` bytes: ``()`` when they fit as they are, the
        oldest record (moved out to make room) when that is enough, ``None`` otherwise."""
        if _size(_with_records(base, entries, responses)) <= target:
            return ()
        older = [e for e in entries if e[0] != digest]
        if not older:
            return None
        oldest = min(older, key=lambda e: (e[1], e[2]))
        rest = [e for e in entries if e is not oldest]
        kept = [r for r in responses if r[0] != oldest[0]]
        if _size(_with_records(base, rest, kept)) > target:
            return None
        entries.remove(oldest)
        return oldest

    def _refused(self, exc: Exception, digest: bytes) -> SessionError | None:
        """A conditional ``PutItem`` of the conversation item that failed, as ours."""
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        if response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            return _convert(exc, self.table)
        return self._lost(response.get("Item"), digest)

    @staticmethod
    def _lost(old: Item | None, digest: bytes) -> SessionError:
        """The conversation item moved: a duplicate if it now holds this event, else a
        conflict."""
        current = _Conversation.of(old)
        record = current.record(digest, current.state.generation if current.state else 0)
        if record is not None:
            return DuplicateEventError("event already committed", record=record)
        return ConflictError("conversation version moved", current=current.state)

    def _transact(self, actions: list[dict[str, Any]], roles: list[str], digest: bytes) -> None:
        try:
            self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except Exception as exc:
            error = self._cancelled(exc, roles, digest)
            if error is None:
                raise
            raise error from exc

    def _commit_record(
        self,
        key: ConversationKey,
        event_sk: str,
        event: EventRecord,
        tombstone: Tombstone | None,
        now: int,
    ) -> None:
        """A record of its own, only if the tombstone is still ``tombstone``."""
        check: dict[str, Any] = {"TableName": self.table, "Key": _key(key.pk, TOMBSTONE_SK)}
        if tombstone is None:  # the user's record may exist, counting conversations
            check["ConditionExpression"] = "attribute_not_exists(gen)"
        else:
            check["ConditionExpression"] = "gen = :gen"
            check["ExpressionAttributeValues"] = {":gen": _n(tombstone.generation)}
        record = {"TableName": self.table, "Item": _event_item(key.pk, event_sk, event)}
        record |= _record_condition(now)
        self._transact(
            [{"Put": record}, {"ConditionCheck": check}], ["event", "tombstone"], _digest(event_sk)
        )

    def _cancelled(self, exc: Exception, roles: list[str], digest: bytes) -> SessionError | None:
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        if response.get("Error", {}).get("Code") != "TransactionCanceledException":
            return _convert(exc, self.table)
        reasons = response.get("CancellationReasons") or []
        failed = {
            role: reason
            for role, reason in zip(roles, reasons, strict=False)
            if reason.get("Code") == "ConditionalCheckFailed"
        }
        codes = [r.get("Code", "None") for r in reasons]
        if "event" in failed:  # checked first: a duplicate is never a conflict
            old = failed["event"].get("Item")
            record = _parse(old) if old else None
            return DuplicateEventError(
                "event already committed",
                record=record if isinstance(record, EventRecord) else None,
            )
        if "state" in failed:
            return self._lost(failed["state"].get("Item"), digest)
        if "tombstone" in failed:
            old = failed["tombstone"].get("Item")
            stone = _parse(old) if old else None
            return ConflictError(
                "the user was deleted since the turn's read",
                tombstone=stone if isinstance(stone, Tombstone) else None,
            )
        if "TransactionConflict" in codes or not reasons:
            # Another transaction held one of the items: a lost race like any other.
            return ConflictError(f"transaction conflict ({codes})")
        if any(c in {"ThrottlingError", "ProvisionedThroughputExceeded"} for c in codes):
            return StoreUnavailableError(f"DynamoDB throttled the commit ({codes})")
        messages = " ".join(str(r.get("Message", "")) for r in reasons).lower()
        if "ValidationError" in codes and "item size" in messages:
            return ItemTooLargeError(
                f"DynamoDB refused an item of the commit as too large ({codes})",
                size=0,
                limit=ITEM_LIMIT,
            )
        return StoreError(f"DynamoDB cancelled the commit ({codes})")

    def claim_outbox(self, key: ConversationKey, event_sk: str, *, now: int, stale: int) -> bool:
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key=_key(key.pk, event_sk),
                UpdateExpression="SET claimed_at = :now",
                ConditionExpression=(
                    "attribute_exists(outbox) AND attribute_not_exists(sent_at) "
                    "AND (attribute_not_exists(claimed_at) OR claimed_at <= :stale)"
                ),
                ExpressionAttributeValues={":now": _n(now), ":stale": _n(stale)},
            )
        except SessionError as exc:
            if _condition_failed(exc):
                return False  # another redelivery claimed it, or it was sent meanwhile
            raise
        return True

    def mark_sent(self, key: ConversationKey, event_sk: str, *, sent_at: int) -> None:
        try:
            self._call(
                "update_item",
                TableName=self.table,
                Key=_key(key.pk, event_sk),
                UpdateExpression="SET sent_at = :t REMOVE outbox",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":t": _n(sent_at)},
            )
        except SessionError as exc:
            if not _condition_failed(exc):
                raise
            # The record expired or the user was deleted: nothing left to mark.

    def _query(self, pk: str) -> list[Item]:
        items: list[Item] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        while True:
            out = self._call("query", **kwargs)
            items.extend(out.get("Items", []))
            if "LastEvaluatedKey" not in out:
                return items
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def user_items(self, user: UserKey) -> list[tuple[str, StoredItem]]:
        """Every record of the user, the inline ones listed as if they were items of their
        own (``<channel>#evt#<digest>``); a conversation item that only points at dead
        letters is not listed itself."""
        found: list[tuple[str, StoredItem]] = []
        for item in self._query(user.pk):
            sk = item["sk"]["S"]
            record = _parse(item)
            if record is not None:
                found.append((sk, record))
            if item.get("kind", {}).get("S") in _CONVERSATION_KINDS:
                conversation = _Conversation.of(item)
                for digest, _, _ in conversation.entries:
                    inline = conversation.record(digest, _num(item, "gen"))
                    assert inline is not None
                    found.append((f"{sk}{EVENT_MARK}{digest.hex()}", inline))
        return sorted(found, key=lambda pair: pair[0])

    def delete_user(self, user: UserKey, *, tombstone: Tombstone) -> int:
        """The tombstone and the user's conversation items in one ``TransactWriteItems``
        (100 items at most: more conversations take further transactions), then one
        conditional ``DeleteItem`` per older sibling record.

        A turn reads the conversation item and not the tombstone, so the two change
        together: a conversation item that exists was written before the delete began and
        is gone with the tombstone's write, or was created after it by a commit that checked
        the tombstone. A turn in flight during the delete fails its commit's condition and
        re-reads. Sibling records are deleted afterwards, each only if still older than the
        tombstone, so nothing a genuine new event writes meanwhile is removed. (Batch deletes
        cannot carry that condition; this is an admin operation, not a turn.) A user with
        more than 99 conversations has the rest deleted by the next transactions, moments
        later: an event in between on one of those sees its pre-delete state.
        """
        deleted = 0
        for attempt in range(DELETE_ATTEMPTS):
            # How many conversations were ever created, read before listing them: the
            # tombstone's write is conditioned on it, so a conversation created between the
            # listing and the write (by an event older than the delete) is not missed.
            record = self._call(
                "get_item",
                TableName=self.table,
                Key=_key(user.pk, TOMBSTONE_SK),
                ConsistentRead=True,
            ).get("Item", {})
            stone: dict[str, Any] = {
                "TableName": self.table,
                "Item": _key(user.pk, TOMBSTONE_SK)
                | {
                    "kind": {"S": "tombstone"},
                    "gen": _n(tombstone.generation),
                    "expires_at": _n(tombstone.expires_at),
                    "updated_at": _n(int(tombstone.deleted_at)),
                },
            }
            if "created" in record:
                stone["Item"]["created"] = record["created"]
                stone["ConditionExpression"] = "created = :created"
                stone["ExpressionAttributeValues"] = {":created": record["created"]}
            else:
                stone["ConditionExpression"] = "attribute_not_exists(created)"
            items = {
                item["sk"]["S"]: item
                for item in self._query(user.pk)
                if item.get("kind", {}).get("S") in _CONVERSATION_KINDS
                and item["sk"]["S"] != TOMBSTONE_SK
                and _num(item, "gen") < tombstone.generation
            }
            conversations = list(items)
            chunks = [conversations[:99]] + [
                conversations[i : i + 100] for i in range(99, len(conversations), 100)
            ]
            try:
                for n, chunk in enumerate(chunks):
                    actions: list[dict[str, Any]] = [
                        {"Delete": {"TableName": self.table, "Key": _key(user.pk, sk)}}
                        for sk in chunk
                    ]
                    if n == 0:
                        # From this moment a late redelivery of an older event is a no-op.
                        actions.insert(0, {"Put": stone})
                    self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
                    # Counted as ``user_items`` lists them: the state and each inline record.
                    for sk in chunk:
                        listed = _Conversation.of(items[sk])
                        deleted += (listed.state is not None) + len(listed.entries)
                break
            except Exception as exc:
                error = _convert(exc, self.table) if not _conflicted(exc) else None
                if error is not None:
                    raise error from exc
                if not _conflicted(exc):
                    raise
                if attempt == DELETE_ATTEMPTS - 1:
                    raise ConflictError("the user's items kept changing during the delete") from exc
                time.sleep(0.02 * 2**attempt)
        for item in self._query(user.pk):
            sk = item["sk"]["S"]
            if sk == TOMBSTONE_SK or _num(item, "gen") >= tombstone.generation:
                continue
            try:
                self._call(
                    "delete_item",
                    TableName=self.table,
                    Key=_key(user.pk, sk),
                    ConditionExpression=(
                        "attribute_exists(pk) AND (attribute_not_exists(gen) OR gen < :gen)"
                    ),
                    ExpressionAttributeValues={":gen": _n(tombstone.generation)},
                )
            except SessionError as exc:
                if not _condition_failed(exc):
                    raise
                continue  # gone already (TTL), or rewritten after the delete began
            deleted += 1
        return deleted

    def health(self) -> None:
        """Raise ``StoreConfigError`` when the table does not exist (``StoreError`` for any
        other failure): one ``DescribeTable``."""
        status = self._call("describe_table", TableName=self.table)["Table"]["TableStatus"]
        if status not in ("ACTIVE", "UPDATING"):
            raise StoreError(f"DynamoDB table {self.table!r} is {status}")

    def close(self) -> None:
        self._client = None


def _conflicted(exc: Exception) -> bool:
    """A transaction cancelled because another request held one of its items, or because a
    conversation was created meanwhile (the tombstone's condition)."""
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    if response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    codes = {r.get("Code") for r in response.get("CancellationReasons") or []}
    return bool(codes & {"TransactionConflict", "ConditionalCheckFailed"})


def _condition_failed(error: SessionError) -> bool:
    cause = error.__cause__
    response = getattr(cause, "response", None) or {}
    return bool(response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


#: Data requests whose answers report consumed capacity; the reads among them.
CAPACITY_OPERATIONS = (
    "GetItem",
    "BatchGetItem",
    "Query",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
)
READ_OPERATIONS = ("GetItem", "BatchGetItem", "Query")


def _ask_capacity(params: dict[str, Any], **_: Any) -> None:
    params.setdefault("ReturnConsumedCapacity", "TOTAL")


class _CapacityMeter:
    """The capacity DynamoDB reports on one client's answers, added up per thread. One meter
    (one pair of botocore hooks) per client, however many stores share it: every data request
    asks for its consumed capacity (no extra request: the answer carries it)."""

    _meters: ClassVar[weakref.WeakKeyDictionary[Any, _CapacityMeter]] = weakref.WeakKeyDictionary()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._units = threading.local()

    @classmethod
    def on(cls, client: Any) -> _CapacityMeter | None:
        meta = getattr(client, "meta", None)
        if meta is None:  # not a botocore client (a test's stand-in): nothing to watch
            return None
        events = meta.events  # the client's own (a wrapper's ``meta`` is the client's)
        with cls._lock:
            meter = cls._meters.get(events)
            if meter is None:
                meter = cls._meters[events] = cls()
                for operation in CAPACITY_OPERATIONS:
                    events.register(f"before-parameter-build.dynamodb.{operation}", _ask_capacity)
                    events.register(f"after-call.dynamodb.{operation}", meter.add)
            return meter

    def add(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity") or []
        units = sum(
            float(c.get("CapacityUnits") or 0)
            for c in (consumed if isinstance(consumed, list) else [consumed])
        )
        kind = "read" if model.name in READ_OPERATIONS else "write"
        setattr(self._units, kind, getattr(self._units, kind, 0.0) + units)

    def take(self) -> tuple[float, float]:
        taken = (getattr(self._units, "read", 0.0), getattr(self._units, "write", 0.0))
        self._units.read = self._units.write = 0.0
        return taken


def make_client(**overrides: Any) -> DynamoDBClient:
    """A DynamoDB client with timeouts and retries sized for webhook deadlines."""
    import boto3
    from botocore.config import Config

    config = Config(
        # The store builds every request itself: botocore's validation of each parameter
        # is time on the hot path that finds nothing (DynamoDB still validates).
        parameter_validation=False,
        connect_timeout=2,
        read_timeout=3,
        retries={"mode": "standard", "total_max_attempts": 3},
        tcp_keepalive=True,
    )
    if "config" in overrides:  # a caller's settings win (say, max_pool_connections)
        config = config.merge(overrides.pop("config"))
    return boto3.client("dynamodb", config=config, **overrides)


def create_table(client: DynamoDBClient, table: str) -> None:
    """Create the sessions table with the schema ``serverless.yml`` declares, TTL on.

    Idempotent: an existing table is left as it is (its TTL is still switched on).
    """
    try:
        client.create_table(
            TableName=table,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except Exception as exc:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
        if code != "ResourceInUseException":
            error = _convert(exc, table)
            if error is None:
                raise
            raise error from exc
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
    try:
        client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
    except Exception as exc:
        message = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Message", ""))
        if "already enabled" not in message.lower():
            error = _convert(exc, table)
            if error is None:
                raise
            raise error from exc
