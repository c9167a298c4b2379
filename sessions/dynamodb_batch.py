"""Group commits on DynamoDB (``sessions.batches``): the requests, for :class:`DynamoDBStore`.

A batch's read is the turn's read: one consistent ``GetItem`` of the conversation item, which
holds the recent records inline; more only where ``Conversation.lookup`` says a record may lie
outside the item (pages, items of their own: one ``BatchGetItem`` for all of the batch's, and
one ``Query`` of the pages from the lowest key on). A batch's write is the turn's write: one
``PutItem`` conditioned on the item as read, with every record of the batch inline (a
``TransactWriteItems`` only when the batch creates the item or a record needs an item of its
own). Records move out (when the item as read is full) before the write, decided by the item
as read alone, exactly as for one turn; the batch's own records are always placed inline on
top (ten of them add 160 bytes), so that no page ever holds a record of a batch whose write
then failed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sessions import dynamodb_layout as layout
from sessions.batches import BatchRead, BatchWrite
from sessions.dynamodb_layout import Conversation, Item
from sessions.errors import ConflictError, DuplicateEventError, SessionError
from sessions.keys import TOMBSTONE_SK, ConversationKey
from sessions.store import EventRecord, EventWrite, Snapshot, Tombstone, stones_of

if TYPE_CHECKING:
    from sessions.dynamodb import DynamoDBStore


def load_batch(
    store: DynamoDBStore,
    key: ConversationKey,
    events: Sequence[tuple[str, float | None]],
    users: Sequence[str] = (),
) -> BatchRead:
    stones: dict[str, Tombstone] = {}
    wanted_users = [pk for pk in dict.fromkeys(users) if pk != key.pk][:99]
    if wanted_users:
        # The item and the users' tombstones in one request (one consistent read each).
        keys = [layout.key_of(key.pk, key.sk)]
        keys += [layout.key_of(pk, TOMBSTONE_SK) for pk in wanted_users]
        request: dict[str, Any] = {store.table: {"Keys": keys, "ConsistentRead": True}}
        item = None
        for out in store._batch("batch_get_item", request, "UnprocessedKeys", "keys"):
            for found_item in out.get("Responses", {}).get(store.table, []):
                if (found_item["pk"]["S"], found_item["sk"]["S"]) == (key.pk, key.sk):
                    item = found_item
                    continue
                stone = layout.parse(found_item)
                if isinstance(stone, Tombstone):
                    stones[found_item["pk"]["S"]] = stone
        conversation = Conversation.of(item)
    else:
        conversation = Conversation.of(store._get(key))
    records: list[EventRecord | None] = []
    more: list[str] = []
    pages: dict[int, tuple[int, int]] = {}  # event index -> the keys its pages span
    for index, (event_sk, event_time) in enumerate(events):
        d = layout.digest(event_sk)
        inline = conversation.record(d)
        records.append(inline)
        if inline is not None:
            continue
        key_ms = layout.event_key(event_time)
        where = conversation.lookup(key_ms, layout.second_key(event_time))
        if where.own:
            more += [event_sk, layout.record_sk(key.sk, d)]
        if where.page:
            pages[index] = (where.low, key_ms)
        if conversation.needs_tombstone(event_time):
            more.append(TOMBSTONE_SK)
    found: dict[str, Item] = {}
    wanted = list(dict.fromkeys(more))
    for start in range(0, len(wanted), 100):
        found |= store._batch_get(key.pk, wanted[start : start + 100])
    read: list[Item] = []
    if pages:  # the batch's keys are close together: one Query from the lowest usually
        spans = pages.values()
        low, high = min(lo for lo, _ in spans), max(hi for _, hi in spans)
        read = _pages(store, key, conversation.chain, low, high)
    for index, (event_sk, _) in enumerate(events):
        if records[index] is not None:
            continue
        d = layout.digest(event_sk)
        for sk in (event_sk, layout.record_sk(key.sk, d)):
            record = layout.parse(found[sk]) if sk in found else None
            if isinstance(record, EventRecord):
                records[index] = record
                break
        if index in pages:
            mine = layout.pages_for(*pages[index], read)
            record = layout.paged_record(mine, d, conversation.generation)
            current = records[index]
            if record is not None and (current is None or record.expires_at > current.expires_at):
                records[index] = record
    stone = layout.parse(found[TOMBSTONE_SK]) if TOMBSTONE_SK in found else None
    snapshot = Snapshot(
        state=conversation.state,
        event=None,
        tombstone=stone if isinstance(stone, Tombstone) else None,
        handle=conversation,
    )
    return BatchRead(snapshot, tuple(records), stones)


def _pages(
    store: DynamoDBStore, key: ConversationKey, chain: str, low: int, high: int
) -> list[Item]:
    """The pages of the chain from ``low`` on that may hold a record of the batch's keys, up
    to ``high`` (``layout.read_on``). The batch's keys are close together (events of the same
    seconds), so one ``Query`` from the lowest key on, a few pages a time, usually finds them
    all; each event then takes its own (``layout.pages_for``)."""
    first, last = layout.page_range(key.sk, chain, low)
    start: dict[str, Any] | None = None
    read: list[Item] = []
    while layout.read_on(high, read):
        request: dict[str, Any] = {
            "TableName": store.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {
                ":pk": {"S": key.pk},
                ":low": {"S": first},
                ":high": {"S": last},
            },
            "ConsistentRead": True,
            "Limit": 4,
        }
        if start is not None:
            request["ExclusiveStartKey"] = start
        out = store._call("query", **request)
        read += out.get("Items", [])
        start = out.get("LastEvaluatedKey")
        if start is None:
            break
    return read


def commit_batch(store: DynamoDBStore, write: BatchWrite) -> None:
    key, now = write.key, write.now
    handle = write.loaded.handle if write.loaded is not None else None
    if not isinstance(handle, Conversation):
        handle = Conversation.of(store._get(key))
        if not _same(handle, write):
            raise ConflictError("conversation version moved", current=handle.state)
    digests = [layout.digest(e.event_sk) for e in write.events]
    for d in digests:
        inline = handle.record(d)
        if inline is not None and inline.expires_at > now:
            raise DuplicateEventError("an event of the batch is committed", record=inline)
    # The earliest event first: a batch that creates the item is refused (the user's record's
    # condition) when a delete came at or after any of its events.
    order = sorted(
        write.events,
        key=lambda e: round(e.event_time * 1000) if e.event_time is not None else now * 1000,
    )
    first = order[0]
    put, records, creator, moved = store._placed(
        handle,
        EventWrite(
            key=key,
            event_sk=first.event_sk,
            event=first.event,
            tombstone=write.tombstone,
            now=now,
            state=write.state,
            expected=write.expected,
            loaded=write.loaded,
            event_time=first.event_time,
        ),
    )
    item = put["Item"]
    token, created_gen = item["w"], item.get("gen")
    event_ms = round(first.event_time * 1000) if first.event_time is not None else now * 1000
    for one in order[1:]:
        placed = layout.place(
            Conversation.of(item),
            pk=key.pk,
            sk=key.sk,
            state=write.state,
            event_sk=one.event_sk,
            event=one.event,
            key=layout.event_key(one.event_time),
            now=now,
            new_chain=os.urandom(4).hex(),
            move=False,
        )
        item = placed.item
        extra = placed.records
        if creator is not None:
            extra = [
                (sk, replace(record, generation=max(record.generation, event_ms)))
                for sk, record in extra
            ]
        records = [*records, *extra]
    item["w"] = token
    if created_gen is not None:
        item["gen"] = created_gen
    put["Item"] = item
    if creator is not None:
        creator["Update"]["ExpressionAttributeValues"][":x"] = item["expires_at"]
    if moved:
        store._batch_write(moved)  # before the item: its conditional write makes them count
    if creator is None and not records:
        try:
            store.client.put_item(**put)
        except Exception as exc:
            old = (getattr(exc, "response", None) or {}).get("Item") or {}
            if old.get("w") == token:
                return  # applied by the attempt whose answer was lost
            error = _refused(store, exc, digests)
            if error is None:
                raise
            raise error from exc
        return
    roles = ["state"]
    actions: list[dict[str, Any]] = [{"Put": put}]
    for sk, record in records:
        own: dict[str, Any] = {
            "TableName": store.table,
            "Item": layout.event_item(key.pk, sk, record),
        }
        own |= _record_condition(now)
        roles.append("event")
        actions.append({"Put": own})
    if creator is not None:
        roles.append("tombstone")
        actions.append(creator)
        for stone_pk in stones_of(key):
            roles.append("workspace")
            actions.append({"ConditionCheck": store._stone_check(stone_pk, event_ms, now)})
    store._transact(actions, roles, digests[0])


def put_events(store: DynamoDBStore, records: Sequence[tuple[str, str, EventRecord]]) -> None:
    if records:
        store._batch_write([layout.event_item(pk, sk, record) for pk, sk, record in records])


def tombstones(store: DynamoDBStore, pks: Sequence[str]) -> dict[str, Tombstone]:
    found: dict[str, Tombstone] = {}
    unique = list(dict.fromkeys(pks))
    for start in range(0, len(unique), 100):
        keys = [layout.key_of(pk, TOMBSTONE_SK) for pk in unique[start : start + 100]]
        request: dict[str, Any] = {store.table: {"Keys": keys, "ConsistentRead": True}}
        for out in store._batch("batch_get_item", request, "UnprocessedKeys", "keys"):
            for item in out.get("Responses", {}).get(store.table, []):
                stone = layout.parse(item)
                if isinstance(stone, Tombstone):
                    found[item["pk"]["S"]] = stone
    return found


def _same(handle: Conversation, write: BatchWrite) -> bool:
    state, expected = handle.state, write.expected
    if state is None or expected is None:
        return state is None and expected is None
    return (state.version, state.generation, state.updated_at) == (
        expected.version,
        expected.generation,
        expected.updated_at,
    )


def _record_condition(now: int) -> dict[str, Any]:
    from sessions.dynamodb import _record_condition as condition

    return condition(now)


def _refused(store: DynamoDBStore, exc: Exception, digests: list[bytes]) -> SessionError | None:
    """The batch's refused ``PutItem``: a duplicate if the item now holds any of its events
    (the writer reads again and finds which), else a conflict."""
    from sessions.dynamodb_client import convert_error

    response: dict[str, Any] = getattr(exc, "response", None) or {}
    if response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
        return convert_error(exc, store.table)
    current = Conversation.of(response.get("Item"))
    for d in digests:
        if current.record(d) is not None:
            return DuplicateEventError("an event of the batch is committed", record=None)
    return ConflictError("conversation version moved", current=current.state)
