"""The production store: one DynamoDB table (``pk``/``sk`` strings, TTL on ``expires_at``).

boto3 is imported lazily (``sessions.dynamodb_client`` builds the client on first use, then it
is kept for warm invocations; that module also converts botocore's errors, meters the
capacity DynamoDB reports, and creates the table).

Per turn (the usual one: the conversation exists and its item has room): ``load`` is one
consistent ``GetItem`` of the conversation item, which holds the state and the conversation's
recent event records inline, and ``commit`` one ``PutItem`` conditioned on the very item the
load saw (its write token). A lost race or a duplicate costs no extra read: the refused
``PutItem`` returns the item (``ALL_OLD``).

When the item is full, its records move out first, many in one write (a page); a
``TransactWriteItems`` only where one item cannot do: creating a conversation item (with an
``Update`` of the user's record that refuses it if a delete came at or after the event, and
counts the creation for a delete running meanwhile), the event's record in an item of its own
(a dead letter, a sent-mark outbox, a response too large to keep inline), and an effect's
claim. Where records live, and when a load must look beyond the item, is
:mod:`sessions.dynamodb_layout`: pure functions, which this module turns into requests.

Every botocore failure leaves this module as one of ours: ``ClientError`` by its code, and the
rest (no credentials, endpoint unreachable, read timeout) as :class:`StoreUnavailableError`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sessions import dynamodb_batch
from sessions import dynamodb_layout as layout
from sessions.batches import BatchRead, BatchWrite
from sessions.codec import ITEM_LIMIT
from sessions.dynamodb_client import (  # create_table, make_client: re-exported
    WORKSPACE_INDEX,
    CapacityMeter,
    convert_error,
    create_table,
    make_client,
    workspace_of,
)
from sessions.dynamodb_layout import Conversation, Item, n, num
from sessions.errors import (
    ConflictError,
    DuplicateEventError,
    ItemTooLargeError,
    SessionError,
    StoreError,
    StoreUnavailableError,
)
from sessions.keys import SEP, TOMBSTONE_SK, ConversationKey, Partition
from sessions.store import (
    FAILED,
    EventRecord,
    EventWrite,
    Snapshot,
    StoredItem,
    StoredState,
    Tombstone,
    WorkspaceStone,
    stones_of,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

#: ``UnprocessedKeys`` (throttling inside a BatchGetItem) is retried this many times with
#: backoff, then the load fails as unavailable: the webhook's deadline bounds the wait.
UNPROCESSED_RETRIES = 3
#: A user delete is tried again this many times when conversations keep changing under it.
DELETE_ATTEMPTS = 8


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
        "ExpressionAttributeValues": {":now": n(now), ":failed": {"S": FAILED}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _workspace_stone(item: Item | None) -> WorkspaceStone | None:
    if not item or item.get("kind", {}).get("S") != "workspace":
        return None
    return WorkspaceStone(
        num(item, "gen"), bool(item.get("closed", {}).get("BOOL")), num(item, "expires_at")
    )


def _event_ms(write: EventWrite) -> int:
    """The event's time in milliseconds (the write's time when it has none): what a
    conversation's creation is judged against (a delete or an uninstall at or after it)."""
    return round(write.event_time * 1000) if write.event_time is not None else write.now * 1000


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
        self._meter: CapacityMeter | None = None
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
        self._meter = CapacityMeter.on(client)

    def take_capacity(self) -> tuple[float, float]:
        """Read and write capacity units DynamoDB reported for this thread's requests on the
        store's client since the last call (a conditional write that failed is billed but
        not reported)."""
        return self._meter.take() if self._meter is not None else (0.0, 0.0)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:
            error = convert_error(exc, self.table)
            if error is None:
                raise
            raise error from exc

    def _get(self, key: ConversationKey) -> Item | None:
        out = self._call(
            "get_item",
            TableName=self.table,
            Key=layout.key_of(key.pk, key.sk),
            ConsistentRead=True,
        )
        item: Item | None = out.get("Item")
        return item

    def _batch_get(self, pk: str, sks: list[str]) -> dict[str, Item]:
        """One consistent ``BatchGetItem`` of the user's ``sks`` (retrying unprocessed keys)."""
        keys = [layout.key_of(pk, sk) for sk in sks]
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        return {
            item["sk"]["S"]: item
            for out in self._batch("batch_get_item", request, "UnprocessedKeys", "keys")
            for item in out.get("Responses", {}).get(self.table, [])
        }

    def _batch(self, operation: str, request: dict[str, Any], left: str, what: str) -> list[Any]:
        """A batch request, then what DynamoDB left unprocessed under throttling (``left``),
        again with backoff (more requests only then), at most ``UNPROCESSED_RETRIES`` times:
        the webhook's deadline bounds the wait. Returns every answer."""
        answers = []
        delay = 0.02
        for retry in range(UNPROCESSED_RETRIES + 1):
            answers.append(out := self._call(operation, RequestItems=request))
            request = dict(out.get(left) or {})
            if not request:
                return answers
            if retry == UNPROCESSED_RETRIES:
                break
            time.sleep(delay)
            delay *= 2
        raise StoreUnavailableError(
            f"DynamoDB left {what} unprocessed after {UNPROCESSED_RETRIES} retries"
        )

    def _pages(self, key: ConversationKey, chain: str, low: int, high: int) -> list[Item]:
        """The pages of the chain that may hold a record of a key from ``low`` to ``high``
        (``layout.pages_for``): one ``Query`` from ``low`` on, of two pages (the one that holds
        it, in a quiet conversation); more only while they are within ``layout.PAGE_WINDOW``
        of ``high`` (a hot item's)."""
        first, last = layout.page_range(key.sk, chain, low)
        read: list[Item] = []
        start: dict[str, Any] | None = None
        while layout.read_on(high, read):
            request: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
                "ExpressionAttributeValues": {
                    ":pk": {"S": key.pk},
                    ":low": {"S": first},
                    ":high": {"S": last},
                },
                "ConsistentRead": True,
                "Limit": 2 if start is None else 8,
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            out = self._call("query", **request)
            read += out.get("Items", [])
            start = out.get("LastEvaluatedKey")
            if start is None:
                break
        return layout.pages_for(low, high, read)

    def load(
        self,
        key: ConversationKey,
        event_sk: str | None,
        *,
        event_time: float | None = None,
        exact: bool = False,
    ) -> Snapshot:
        """One consistent ``GetItem`` of the conversation item, which holds the state and the
        conversation's recent event records inline. More reads only when the item says they
        are needed (``Conversation.lookup``): a ``Query`` of the pages that may hold the
        event's record, and one ``BatchGetItem`` of the record items that may hold it (its
        own: a dead letter, an outbox; or a record moved out late) and of the tombstone when
        the event happened before the item was created and a delete may lie in between.
        ``exact``: state, record and tombstone in one ``BatchGetItem``, always (then the page
        too when the item says so)."""
        key_ms, second = layout.event_key(event_time), layout.second_key(event_time)
        if exact:
            sks = [key.sk, TOMBSTONE_SK] + ([event_sk] if event_sk else [])
            found = self._batch_get(key.pk, sks)
            conversation = Conversation.of(found.get(key.sk))
        else:
            found = {}
            conversation = Conversation.of(self._get(key))
        d = layout.digest(event_sk) if event_sk else b""
        own_sks = [event_sk, layout.record_sk(key.sk, d)] if event_sk else []
        event = conversation.record(d) if event_sk else None
        if event_sk and event is None:
            where = conversation.lookup(key_ms, second)
            more = []
            if where.own:
                more += [sk for sk in own_sks if sk not in found]
            if not exact and conversation.needs_tombstone(event_time):
                more.append(TOMBSTONE_SK)
            if more:
                found = found | self._batch_get(key.pk, more)
            for sk in own_sks:
                record = layout.parse(found[sk]) if sk in found else None
                if isinstance(record, EventRecord):
                    event = record
                    conversation = replace(conversation, sibling=True)
                    break
            if where.page:
                # Even past an own record: one that expired (a delivery after the event TTL
                # was applied again) must not hide the later commit's record in a page.
                pages = self._pages(key, conversation.chain, where.low, key_ms)
                paged = layout.paged_record(pages, d, conversation.generation)
                if paged is not None and (event is None or paged.expires_at > event.expires_at):
                    event = paged
                    conversation = replace(conversation, sibling=False)
        stone = layout.parse(found[TOMBSTONE_SK]) if TOMBSTONE_SK in found else None
        return Snapshot(
            state=conversation.state,
            event=event,
            tombstone=stone if isinstance(stone, Tombstone) else None,
            handle=conversation,
        )

    def commit(self, write: EventWrite) -> None:
        self._apply(write)

    def record_failure(self, write: EventWrite) -> None:
        self._apply(write)

    def _apply(self, write: EventWrite) -> None:
        """One conditional ``PutItem`` of the conversation item with the event's record
        inline (the usual turn). When the item as read is full, its records move out first,
        to a page and, for late ones, items of their own (one ``BatchWriteItem``, about one
        turn in every few dozen of a busy conversation). A ``TransactWriteItems`` only when
        one item cannot do: the commit creates the conversation (with an ``Update`` of the
        user's record that refuses it if a delete came at or after the event), the event's
        record goes to an item of its own (a dead letter, a sent-mark outbox, a large
        response), or the turn changed other scopes' items (``also``: each written under the
        same conditions, with the event's record inline)."""
        key, now = write.key, write.now
        handle = write.loaded.handle if write.loaded is not None else None
        if not isinstance(handle, Conversation):
            handle = Conversation.of(self._get(key))
            if not _same(handle.state, write.expected):
                raise ConflictError("conversation version moved", current=handle.state)
        d = layout.digest(write.event_sk)
        inline = handle.record(d)
        if inline is not None and inline.expires_at > now:
            raise DuplicateEventError("event already committed", record=inline)
        put, records, creator, moved = self._placed(handle, write)
        if moved:
            # Before the conversation item: its conditional write is what makes them count.
            self._batch_write(moved)
        if creator is None and not records and not write.also:
            try:
                self.client.put_item(**put)
            except Exception as exc:
                old = (getattr(exc, "response", None) or {}).get("Item") or {}
                if old.get("w") == put["Item"]["w"]:
                    # Applied by the attempt whose answer was lost (botocore's retry then
                    # fails the condition; a transaction has a ClientRequestToken for that).
                    return
                error = self._refused(exc, d)
                if error is None:
                    raise
                raise error from exc
            return
        roles = ["state"]
        actions: list[dict[str, Any]] = [{"Put": put}]
        creators = {key.pk: creator} if creator is not None else {}
        for sk, record in records:
            own: dict[str, Any] = {
                "TableName": self.table,
                "Item": layout.event_item(key.pk, sk, record),
            }
            roles.append("event")
            own |= _record_condition(now)
            actions.append({"Put": own})
        for side in write.also:
            side_handle = side.loaded.handle if side.loaded is not None else None
            if not isinstance(side_handle, Conversation):
                side_handle = Conversation.of(self._get(side.key))
                if not _same(side_handle.state, side.expected):
                    raise ConflictError("another scope's state moved")
            # The event's record inline in the side's item too (dedup only: no response).
            side_write = replace(
                write,
                key=side.key,
                state=side.state,
                event_sk=side.key.sk + write.event_sk[len(key.sk) :],
                event=replace(write.event, response=None, outbox=None, payload=None),
            )
            side_put, side_records, side_creator, side_moved = self._placed(side_handle, side_write)
            if side_moved:
                self._batch_write(side_moved)
            roles.append("side")
            actions.append({"Put": side_put})
            for sk, record in side_records:
                roles.append("side")
                actions.append(
                    {"Put": {"TableName": self.table,
                             "Item": layout.event_item(side.key.pk, sk, record)}}
                )  # fmt: skip
            if side_creator is not None and side.key.pk not in creators:
                creators[side.key.pk] = side_creator
        for creation in creators.values():
            roles.append("tombstone")
            actions.append(creation)
        if creators:
            # Creating a conversation: refused in a closed (uninstalled) workspace, in the
            # transaction the creation pays anyway (a check of each stone, no extra request).
            event_ms = _event_ms(write)
            for stone_pk in stones_of(key):
                roles.append("workspace")
                actions.append({"ConditionCheck": self._stone_check(stone_pk, event_ms, now)})
        self._transact(actions, roles, d)

    def _stone_check(self, pk: str, event_ms: int, now: int) -> dict[str, Any]:
        """The condition that a workspace's stone does not refuse a creation at ``event_ms``
        (:meth:`WorkspaceStone.blocks`, as a condition)."""
        return {
            "TableName": self.table,
            "Key": layout.key_of(pk, TOMBSTONE_SK),
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at <= :now "
            "OR (#closed = :no AND gen < :ms)",
            "ExpressionAttributeNames": {"#closed": "closed"},
            "ExpressionAttributeValues": {
                ":now": n(now),
                ":no": {"BOOL": False},
                ":ms": n(event_ms),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def close_workspace(self, pk: str, *, generation: int, expires_at: int) -> None:
        item = layout.key_of(pk, TOMBSTONE_SK) | {
            "kind": {"S": "workspace"},
            "gen": n(generation),
            "closed": {"BOOL": True},
            "expires_at": n(expires_at),
        }
        self._call("put_item", TableName=self.table, Item=item)

    def reopen_workspace(self, pk: str, *, expires_at: int) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=layout.key_of(pk, TOMBSTONE_SK),
                UpdateExpression="SET #closed = :no, expires_at = :x",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#closed": "closed"},
                ExpressionAttributeValues={":no": {"BOOL": False}, ":x": n(expires_at)},
            )
        except Exception as exc:
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return  # never closed: nothing to open
            error = convert_error(exc, self.table)
            if error is None:
                raise
            raise error from exc

    def workspace_stone(self, pk: str) -> WorkspaceStone | None:
        found = self._call(
            "get_item",
            TableName=self.table,
            Key=layout.key_of(pk, TOMBSTONE_SK),
            ConsistentRead=True,
        ).get("Item")
        return _workspace_stone(found)

    def _placed(
        self, handle: Conversation, write: EventWrite
    ) -> tuple[dict[str, Any], list[tuple[str, EventRecord]], dict[str, Any] | None, list[Item]]:
        """One item's writes in a commit (``write.key``'s, as ``handle`` read it): its
        conditional put, the records of its own, the ``Update`` of the user's record when the
        commit creates it (``None`` otherwise), and the records moved out to be written
        first."""
        key, now = write.key, write.now
        event_ms = _event_ms(write)
        creating = handle.state is None or handle.state.expires_at <= now
        placed = layout.place(
            handle,
            pk=key.pk,
            sk=key.sk,
            state=write.state,
            event_sk=write.event_sk,
            event=write.event,
            key=layout.event_key(write.event_time),
            now=now,
            new_chain=os.urandom(4).hex(),
        )
        item, records = placed.item, placed.records
        # This write's token: the next commit is conditioned on it.
        item["w"] = {"B": os.urandom(8)}
        if creating:
            item["gen"] = n(max(num(item, "gen"), event_ms))
            records = [
                (sk, replace(record, generation=max(record.generation, event_ms)))
                for sk, record in records
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
        creator = None
        if creating:
            # The user's record (where a delete leaves its tombstone) counts the conversations
            # created, so that a delete notices one created while it runs; and it refuses the
            # creation if a delete happened at or after the event.
            creator = {
                "Update": {
                    "TableName": self.table,
                    "Key": layout.key_of(key.pk, TOMBSTONE_SK),
                    # ``ws``: the workspace's index (``workspace_partitions``) finds the
                    # partition by it, so a workspace is erased without a scan.
                    "UpdateExpression": "ADD created :one "
                    "SET expires_at = if_not_exists(expires_at, :x), ws = :ws",
                    "ConditionExpression": "attribute_not_exists(gen) OR gen < :ms",
                    "ExpressionAttributeValues": {
                        ":ms": n(event_ms),
                        ":one": n(1),
                        ":x": item["expires_at"],
                        ":ws": {"S": workspace_of(key)},
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        return put, records, creator, placed.moved

    def _batch_write(self, items: list[Item]) -> None:
        """Plain puts of the records moved out (25 items a request; unprocessed items are
        retried with backoff, then the commit fails as unavailable, having written nothing
        that counts)."""
        for start in range(0, len(items), 25):
            puts = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            self._batch("batch_write_item", {self.table: puts}, "UnprocessedItems", "items")

    def _refused(self, exc: Exception, digest: bytes) -> SessionError | None:
        """A conditional ``PutItem`` of the conversation item that failed, as ours."""
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        if response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            return convert_error(exc, self.table)
        return self._lost(response.get("Item"), digest)

    @staticmethod
    def _lost(old: Item | None, digest: bytes) -> SessionError:
        """The conversation item moved: a duplicate if it now holds this event, else a
        conflict."""
        current = Conversation.of(old)
        record = current.record(digest)
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

    def claim(self, write: EventWrite) -> None:
        """A record of its own, only if the tombstone is still ``write.tombstone``."""
        key, tombstone, event_sk = write.key, write.tombstone, write.event_sk
        check: dict[str, Any] = {
            "TableName": self.table,
            "Key": layout.key_of(key.pk, TOMBSTONE_SK),
        }
        if tombstone is None:  # the user's record may exist, counting conversations
            check["ConditionExpression"] = "attribute_not_exists(gen)"
        else:
            check["ConditionExpression"] = "gen = :gen"
            check["ExpressionAttributeValues"] = {":gen": n(tombstone.generation)}
        record = {
            "TableName": self.table,
            "Item": layout.event_item(key.pk, event_sk, write.event),
        }
        record |= _record_condition(write.now)
        self._transact(
            [{"Put": record}, {"ConditionCheck": check}],
            ["event", "tombstone"],
            layout.digest(event_sk),
        )

    def _cancelled(self, exc: Exception, roles: list[str], digest: bytes) -> SessionError | None:
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        if response.get("Error", {}).get("Code") != "TransactionCanceledException":
            return convert_error(exc, self.table)
        reasons = response.get("CancellationReasons") or []
        failed = {
            role: reason
            for role, reason in zip(roles, reasons, strict=False)
            if reason.get("Code") == "ConditionalCheckFailed"
        }
        codes = [r.get("Code", "None") for r in reasons]
        if "event" in failed:  # checked first: a duplicate is never a conflict
            old = failed["event"].get("Item")
            record = layout.parse(old) if old else None
            return DuplicateEventError(
                "event already committed",
                record=record if isinstance(record, EventRecord) else None,
            )
        if "state" in failed:
            return self._lost(failed["state"].get("Item"), digest)
        if "side" in failed:
            return ConflictError("another scope's state moved")
        if "tombstone" in failed:
            old = failed["tombstone"].get("Item")
            stone = layout.parse(old) if old else None
            return ConflictError(
                "the user was deleted since the turn's read",
                tombstone=stone if isinstance(stone, Tombstone) else None,
            )
        if "workspace" in failed:
            ws = _workspace_stone(failed["workspace"].get("Item"))
            return ConflictError(
                "the workspace was uninstalled",
                tombstone=ws.as_tombstone() if ws is not None else None,
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
                Key=layout.key_of(key.pk, event_sk),
                UpdateExpression="SET claimed_at = :now",
                ConditionExpression=(
                    "attribute_exists(outbox) AND attribute_not_exists(sent_at) "
                    "AND (attribute_not_exists(claimed_at) OR claimed_at <= :stale)"
                ),
                ExpressionAttributeValues={":now": n(now), ":stale": n(stale)},
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
                Key=layout.key_of(key.pk, event_sk),
                UpdateExpression="SET sent_at = :t REMOVE outbox",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":t": n(sent_at)},
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

    def user_items(self, user: Partition) -> list[tuple[str, StoredItem]]:
        """Every record of the user, the inline ones listed as if they were items of their
        own (``<channel>#evt#<digest>``); a conversation item that only points at dead
        letters is not listed itself."""
        found: dict[str, StoredItem] = {}
        for item in self._query(user.pk):
            record = layout.parse(item)
            if record is not None:
                found[item["sk"]["S"]] = record
            for sk, inline in layout.listed(item):
                found.setdefault(sk, inline)  # a page may repeat a record still inline
        return sorted(found.items(), key=lambda pair: pair[0])

    def delete_user(self, user: Partition, *, tombstone: Tombstone) -> int:
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
                Key=layout.key_of(user.pk, TOMBSTONE_SK),
                ConsistentRead=True,
            ).get("Item", {})
            stone: dict[str, Any] = {
                "TableName": self.table,
                "Item": layout.key_of(user.pk, TOMBSTONE_SK)
                | {
                    "kind": {"S": "tombstone"},
                    "gen": n(tombstone.generation),
                    "expires_at": n(tombstone.expires_at),
                    "updated_at": n(int(tombstone.deleted_at)),
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
                if item.get("kind", {}).get("S") in layout.CONVERSATION_KINDS
                and item["sk"]["S"] != TOMBSTONE_SK
                and num(item, "gen") < tombstone.generation
            }
            conversations = list(items)
            chunks = [conversations[:99]] + [
                conversations[i : i + 100] for i in range(99, len(conversations), 100)
            ]
            try:
                for index, chunk in enumerate(chunks):
                    actions: list[dict[str, Any]] = [
                        {"Delete": {"TableName": self.table, "Key": layout.key_of(user.pk, sk)}}
                        for sk in chunk
                    ]
                    if index == 0:
                        # From this moment a late redelivery of an older event is a no-op.
                        actions.insert(0, {"Put": stone})
                    self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
                    # Counted as ``user_items`` lists them: the state and each inline record.
                    for sk in chunk:
                        listed = Conversation.of(items[sk])
                        deleted += (listed.state is not None) + len(listed.entries)
                break
            except Exception as exc:
                error = convert_error(exc, self.table) if not _conflicted(exc) else None
                if error is not None:
                    raise error from exc
                if not _conflicted(exc):
                    raise
                if attempt == DELETE_ATTEMPTS - 1:
                    raise ConflictError("the user's items kept changing during the delete") from exc
                time.sleep(0.02 * 2**attempt)
        for item in self._query(user.pk):
            sk = item["sk"]["S"]
            if sk == TOMBSTONE_SK or num(item, "gen") >= tombstone.generation:
                continue
            try:
                self._call(
                    "delete_item",
                    TableName=self.table,
                    Key=layout.key_of(user.pk, sk),
                    ConditionExpression=(
                        "attribute_exists(pk) AND (attribute_not_exists(gen) OR gen < :gen)"
                    ),
                    ExpressionAttributeValues={":gen": n(tombstone.generation)},
                )
            except SessionError as exc:
                if not _condition_failed(exc):
                    raise
                continue  # gone already (TTL), or rewritten after the delete began
            # Counted as ``user_items`` lists them: a page by the records it holds.
            deleted += len(layout.listed(item)) or 1
        return deleted

    def workspace_partitions(self, platform: str, workspace: str) -> list[str]:
        """The partition keys of a workspace's users and channels: a ``Query`` of the
        workspace index (a partition's user record carries ``ws`` from its first
        conversation's creation on), paginated; never a scan."""
        found: set[str] = set()
        start: dict[str, Any] | None = None
        while True:
            page = self._call(
                "query",
                TableName=self.table,
                IndexName=WORKSPACE_INDEX,
                KeyConditionExpression="ws = :ws",
                ExpressionAttributeValues={":ws": {"S": f"{platform}{SEP}{workspace}"}},
                **({"ExclusiveStartKey": start} if start else {}),
            )
            found.update(item["pk"]["S"] for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return sorted(found)

    def put_record(self, pk: str, sk: str, blob: bytes, *, expires_at: int) -> None:
        item = layout.key_of(pk, sk) | {
            "kind": {"S": "record"},
            "blob": {"B": blob},
            "expires_at": n(expires_at),
        }
        self._call("put_item", TableName=self.table, Item=item)

    def create_record(self, pk: str, sk: str, blob: bytes, *, expires_at: int, now: int) -> bool:
        item = layout.key_of(pk, sk) | {
            "kind": {"S": "record"},
            "blob": {"B": blob},
            "expires_at": n(expires_at),
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR expires_at <= :now",
                ExpressionAttributeValues={":now": n(now)},
            )
        except Exception as exc:
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return False
            error = convert_error(exc, self.table)
            if error is None:
                raise
            raise error from exc
        return True

    def get_record(self, pk: str, sk: str) -> tuple[bytes, int] | None:
        found = self._call(
            "get_item", TableName=self.table, Key=layout.key_of(pk, sk), ConsistentRead=True
        ).get("Item")
        if not found or found.get("kind", {}).get("S") != "record":
            return None
        return bytes(found["blob"]["B"]), num(found, "expires_at")

    def delete_record(self, pk: str, sk: str) -> tuple[bytes, int] | None:
        try:
            old = self.client.delete_item(
                TableName=self.table,
                Key=layout.key_of(pk, sk),
                ConditionExpression="attribute_exists(pk) AND kind = :record",
                ExpressionAttributeValues={":record": {"S": "record"}},
                ReturnValues="ALL_OLD",
            ).get("Attributes")
        except Exception as exc:
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return None  # none there (or another delete took it first)
            error = convert_error(exc, self.table)
            if error is None:
                raise
            raise error from exc
        return (bytes(old["blob"]["B"]), num(old, "expires_at")) if old else None

    def record_parts(self, pk: str) -> list[str]:
        found: list[str] = []
        start: dict[str, Any] | None = None
        while True:
            page = self._call(
                "query",
                TableName=self.table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": pk}},
                ProjectionExpression="sk",
                ConsistentRead=True,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            found.extend(item["sk"]["S"] for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return sorted(found)

    def health(self) -> None:
        """Raise ``StoreConfigError`` when the table does not exist (``StoreError`` for any
        other failure): one ``DescribeTable``."""
        status = self._call("describe_table", TableName=self.table)["Table"]["TableStatus"]
        if status not in ("ACTIVE", "UPDATING"):
            raise StoreError(f"DynamoDB table {self.table!r} is {status}")

    def close(self) -> None:
        self._client = None

    # -- group commits (``sessions.batches``; the requests in ``sessions.dynamodb_batch``) --

    def load_batch(
        self,
        key: ConversationKey,
        events: Sequence[tuple[str, float | None]],
        users: Sequence[str] = (),
    ) -> BatchRead:
        return dynamodb_batch.load_batch(self, key, events, users)

    def commit_batch(self, write: BatchWrite) -> None:
        dynamodb_batch.commit_batch(self, write)

    def put_events(self, records: Sequence[tuple[str, str, EventRecord]]) -> None:
        dynamodb_batch.put_events(self, records)

    def tombstones(self, pks: Sequence[str]) -> dict[str, Tombstone]:
        return dynamodb_batch.tombstones(self, pks)


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


__all__ = ["DynamoDBStore", "create_table", "make_client"]
