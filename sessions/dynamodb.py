"""The production store: one DynamoDB table (``pk``/``sk`` strings, TTL on ``expires_at``).

This is the only module of ``sessions`` that imports boto3, and it does so lazily: the client
is passed in or built on first use, then kept for warm invocations.

Per turn: ``load`` is one consistent ``BatchGetItem`` (state, event record, tombstone) and
``commit`` one ``TransactWriteItems``: the state Put conditioned on the very item the load saw
(version, generation, write time), the record Put conditioned on its absence, and a
``ConditionCheck`` that the user's tombstone is still the one the load saw (a delete that ran
in between cancels the commit instead of being undone). Both Puts ask for ``ALL_OLD`` on a
failed condition, so a lost race or a duplicate costs no extra read.

Every botocore failure leaves this module as one of ours: ``ClientError`` by its code, and the
rest (no credentials, endpoint unreachable, read timeout) as :class:`StoreUnavailableError`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

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
from sessions.keys import TOMBSTONE_SK, ConversationKey, UserKey
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


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _key(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _parse(item: Item) -> StoredItem:
    def num(name: str, default: int = 0) -> int:
        return int(item[name]["N"]) if name in item else default

    def blob(name: str) -> bytes | None:
        return bytes(item[name]["B"]) if name in item else None

    kind = item.get("kind", {}).get("S", "state")
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
    return StoredState(
        version=num("version"),
        blob=blob("state") or b"",
        expires_at=num("expires_at"),
        updated_at=num("updated_at"),
        enterprise=item["enterprise"]["S"] if "enterprise" in item else None,
        generation=num("gen"),
    )


def _state_item(key: ConversationKey, state: StoredState) -> Item:
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


class DynamoDBStore:
    """DynamoDB implementation of :class:`sessions.store.Store`.

    Args:
        table: the table name.
        client: a boto3 DynamoDB client; built on first use when omitted (honouring
            ``AWS_ENDPOINT_URL_DYNAMODB``), with short timeouts that fit a 3 s webhook deadline.
    """

    def __init__(self, table: str, *, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = make_client()
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:
            error = _convert(exc, self.table)
            if error is None:
                raise
            raise error from exc

    def load(self, key: ConversationKey, event_sk: str | None) -> Snapshot:
        keys = [_key(key.pk, key.sk), _key(key.pk, TOMBSTONE_SK)]
        if event_sk:
            keys.append(_key(key.pk, event_sk))
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        found: dict[str, StoredItem] = {}
        delay = 0.02
        for retry in range(UNPROCESSED_RETRIES + 1):
            out = self._call("batch_get_item", RequestItems=request)
            for item in out.get("Responses", {}).get(self.table, []):
                found[item["sk"]["S"]] = _parse(item)
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
        state = found.get(key.sk)
        event = found.get(event_sk) if event_sk else None
        stone = found.get(TOMBSTONE_SK)
        return Snapshot(
            state=state if isinstance(state, StoredState) else None,
            event=event if isinstance(event, EventRecord) else None,
            tombstone=stone if isinstance(stone, Tombstone) else None,
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
    ) -> None:
        roles: list[str] = []
        actions: list[dict[str, Any]] = []
        if state is not None:
            state_put: dict[str, Any] = {
                "TableName": self.table,
                "Item": _state_item(key, state),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
            if expected is None:
                state_put["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                # The very item the load returned: a version repeats when an item is removed
                # (delete, TTL) and recreated, its generation and write time do not.
                same_gen = "gen = :g" if expected.generation else "attribute_not_exists(gen)"
                state_put["ConditionExpression"] = (
                    f"version = :v AND updated_at = :u AND {same_gen}"
                )
                state_put["ExpressionAttributeValues"] = {
                    ":v": _n(expected.version),
                    ":u": _n(expected.updated_at),
                } | ({":g": _n(expected.generation)} if expected.generation else {})
            roles.append("state")
            actions.append({"Put": state_put})
        roles.append("event")
        actions.append(
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _event_item(key.pk, event_sk, event),
                    # An expired record that TTL has not removed yet no longer counts, and a
                    # dead letter gives way to a later successful run of the same event.
                    "ConditionExpression": (
                        "attribute_not_exists(pk) OR expires_at <= :now OR #status = :failed"
                    ),
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {":now": _n(now), ":failed": {"S": FAILED}},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        )
        check: dict[str, Any] = {"TableName": self.table, "Key": _key(key.pk, TOMBSTONE_SK)}
        if tombstone is None:
            check["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            check["ConditionExpression"] = "gen = :gen"
            check["ExpressionAttributeValues"] = {":gen": _n(tombstone.generation)}
        roles.append("tombstone")
        actions.append({"ConditionCheck": check})
        try:
            self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except Exception as exc:
            error = self._cancelled(exc, roles)
            if error is None:
                raise
            raise error from exc

    def _cancelled(self, exc: Exception, roles: list[str]) -> SessionError | None:
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
        if "tombstone" in failed:
            return ConflictError("the user was deleted since the turn's read")
        if "state" in failed:
            old = failed["state"].get("Item")
            current = _parse(old) if old else None
            return ConflictError(
                "conversation version moved",
                current=current if isinstance(current, StoredState) else None,
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
        return [(item["sk"]["S"], _parse(item)) for item in self._query(user.pk)]

    def delete_user(self, user: UserKey, *, tombstone: Tombstone) -> int:
        """Tombstone first, then one conditional ``DeleteItem`` per older item.

        Between the tombstone and the deletes, turns go on: one that loaded before the
        tombstone cannot commit (its commit checks the tombstone); one that loads after it
        reads older items as absent and writes items of the tombstone's generation. Each
        delete is conditioned on the item still being older than the tombstone, so nothing
        such a turn wrote is removed and nothing the delete removes can come back. (Batch
        deletes cannot carry that condition; this is an admin operation, not a turn.)
        """
        # From this moment a late redelivery of an older event is a no-op.
        self._call(
            "put_item",
            TableName=self.table,
            Item=_key(user.pk, TOMBSTONE_SK)
            | {
                "kind": {"S": "tombstone"},
                "gen": _n(tombstone.generation),
                "expires_at": _n(tombstone.expires_at),
                "updated_at": _n(int(tombstone.deleted_at)),
            },
        )
        deleted = 0
        for item in self._query(user.pk):
            sk = item["sk"]["S"]
            if sk == TOMBSTONE_SK or int(item.get("gen", {}).get("N", 0)) >= tombstone.generation:
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

    def close(self) -> None:
        self._client = None


def _condition_failed(error: SessionError) -> bool:
    cause = error.__cause__
    response = getattr(cause, "response", None) or {}
    return bool(response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def make_client(**overrides: Any) -> DynamoDBClient:
    """A DynamoDB client with timeouts and retries sized for webhook deadlines."""
    import boto3
    from botocore.config import Config

    config = Config(
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
