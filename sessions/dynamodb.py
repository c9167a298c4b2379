"""The production store: one DynamoDB table (``pk``/``sk`` strings, TTL on ``expires_at``).

This is the only module of ``sessions`` that imports boto3, and it does so lazily: the client
is passed in or built on first use, then kept for warm invocations.

Per turn: ``load`` is one consistent ``BatchGetItem`` (state, event record, tombstone) and
``commit`` one ``TransactWriteItems`` (state Put conditioned on the version, record Put
conditioned on its absence), both asking for ``ALL_OLD`` on a failed condition so that a lost
race or a duplicate costs no extra read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sessions.errors import (
    ConflictError,
    DuplicateEventError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)
from sessions.keys import TOMBSTONE_SK, ConversationKey, UserKey
from sessions.store import EventRecord, Snapshot, StoredItem, StoredState, Tombstone

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
        )
    if kind == "tombstone":
        return Tombstone(deleted_at=num("updated_at"), expires_at=num("expires_at"))
    return StoredState(
        version=num("version"),
        blob=blob("state") or b"",
        expires_at=num("expires_at"),
        updated_at=num("updated_at"),
        enterprise=item["enterprise"]["S"] if "enterprise" in item else None,
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
    return item


def _convert(exc: Exception, table: str) -> StoreError:
    """Turn a botocore error into ours (the caller raises it ``from exc``)."""
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    message = response.get("Error", {}).get("Message", str(exc))
    if code in _RETRYABLE:
        return StoreUnavailableError(f"DynamoDB {code}: {message}")
    if code == "ResourceNotFoundException":
        return StoreConfigError(f"DynamoDB table {table!r} not found: {message}", detail=code)
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

    def load(self, key: ConversationKey, event_sk: str | None) -> Snapshot:
        keys = [_key(key.pk, key.sk), _key(key.pk, TOMBSTONE_SK)]
        if event_sk:
            keys.append(_key(key.pk, event_sk))
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        found: dict[str, StoredItem] = {}
        delay = 0.02
        while request:
            try:
                out = self.client.batch_get_item(RequestItems=request)
            except Exception as exc:
                if not hasattr(exc, "response"):
                    raise
                raise _convert(exc, self.table) from exc
            for item in out.get("Responses", {}).get(self.table, []):
                found[item["sk"]["S"]] = _parse(item)
            # Keys left unprocessed under throttling: retry them (more requests only then).
            request = dict(out.get("UnprocessedKeys") or {})
            if request:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
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
        expected_version: int | None,
        state: StoredState,
        event_sk: str,
        event: EventRecord,
        now: int,
    ) -> None:
        state_put: dict[str, Any] = {
            "TableName": self.table,
            "Item": _state_item(key, state),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if expected_version is None:
            state_put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            state_put["ConditionExpression"] = "version = :v"
            state_put["ExpressionAttributeValues"] = {":v": _n(expected_version)}
        event_put: dict[str, Any] = {
            "TableName": self.table,
            "Item": _event_item(key.pk, event_sk, event),
            # An expired record that TTL has not removed yet no longer counts.
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at <= :now",
            "ExpressionAttributeValues": {":now": _n(now)},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            self.client.transact_write_items(
                TransactItems=[{"Put": state_put}, {"Put": event_put}]  # type: ignore[typeddict-item]
            )
        except Exception as exc:
            if not hasattr(exc, "response"):
                raise
            raise self._cancelled(exc) from exc

    def _cancelled(self, exc: Exception) -> StoreError:
        response: dict[str, Any] = getattr(exc, "response", {})
        if response.get("Error", {}).get("Code") != "TransactionCanceledException":
            return _convert(exc, self.table)
        reasons = response.get("CancellationReasons") or []
        codes = [r.get("Code", "None") for r in reasons]
        if len(reasons) == 2 and codes[1] == "ConditionalCheckFailed":
            old = reasons[1].get("Item")
            record = _parse(old) if old else None
            return DuplicateEventError(
                "event already committed",
                record=record if isinstance(record, EventRecord) else None,
            )
        if len(reasons) == 2 and codes[0] == "ConditionalCheckFailed":
            old = reasons[0].get("Item")
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
        return StoreError(f"DynamoDB cancelled the commit ({codes})")

    def mark_sent(self, key: ConversationKey, event_sk: str, *, sent_at: int) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(key.pk, event_sk),
                UpdateExpression="SET sent_at = :t REMOVE outbox",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":t": _n(sent_at)},
            )
        except Exception as exc:
            if not hasattr(exc, "response"):
                raise
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return  # the record expired or the user was deleted: nothing left to mark
            raise _convert(exc, self.table) from exc

    def _query(self, pk: str) -> list[Item]:
        items: list[Item] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        try:
            while True:
                out = self.client.query(**kwargs)
                items.extend(out.get("Items", []))
                if "LastEvaluatedKey" not in out:
                    return items
                kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        except Exception as exc:
            if not hasattr(exc, "response"):
                raise
            raise _convert(exc, self.table) from exc

    def user_items(self, user: UserKey) -> list[tuple[str, StoredItem]]:
        return [(item["sk"]["S"], _parse(item)) for item in self._query(user.pk)]

    def delete_user(self, user: UserKey, *, tombstone: Tombstone) -> int:
        try:
            # Tombstone first: from this moment a late redelivery of an older event is a no-op.
            self.client.put_item(
                TableName=self.table,
                Item=_key(user.pk, TOMBSTONE_SK)
                | {
                    "kind": {"S": "tombstone"},
                    "expires_at": _n(tombstone.expires_at),
                    "updated_at": _n(tombstone.deleted_at),
                },
            )
        except Exception as exc:
            if not hasattr(exc, "response"):
                raise
            raise _convert(exc, self.table) from exc
        keys = [
            _key(user.pk, item["sk"]["S"])
            for item in self._query(user.pk)
            if item["sk"]["S"] != TOMBSTONE_SK
        ]
        for start in range(0, len(keys), 25):
            pending: dict[str, Any] = {
                self.table: [{"DeleteRequest": {"Key": k}} for k in keys[start : start + 25]]
            }
            delay = 0.05
            while pending:
                try:
                    out = self.client.batch_write_item(RequestItems=pending)
                except Exception as exc:
                    if not hasattr(exc, "response"):
                        raise
                    raise _convert(exc, self.table) from exc
                pending = dict(out.get("UnprocessedItems") or {})
                if pending:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
        return len(keys)

    def close(self) -> None:
        self._client = None


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
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code != "ResourceInUseException":
            if not hasattr(exc, "response"):
                raise
            raise _convert(exc, table) from exc
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
    try:
        client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
    except Exception as exc:
        message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
        if "already enabled" not in message.lower():
            if not hasattr(exc, "response"):
                raise
            raise _convert(exc, table) from exc
