"""The single-item variant, written out only to be measured: one item holds the state, a
version and the last ``KEEP`` event ids. A turn is a ``GetItem`` and a ``PutItem`` conditioned
on the version (a lost race re-reads and re-runs, so no update is lost), and a duplicate is the
``GetItem`` alone. It is as cheap as a turn can be, but it remembers only the last ``KEEP``
ids: a redelivery of an older event is applied again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

Turn = Callable[[dict[str, Any], Any], tuple[dict[str, Any], list[Any], Any]]
KEEP = 10


class SingleItem:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def run(self, pk: str, sk: str, idempotency_key: str, turn: Turn, event: Any) -> Any:
        key = {"pk": {"S": pk}, "sk": {"S": sk}}
        event_id = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
        while True:
            got = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
            item = got.get("Item")
            ids = item["ids"]["L"] if item else []
            if any(i["S"] == event_id for i in ids):
                return json.loads(item["response"]["S"]) if item and "response" in item else None
            state = json.loads(item["state"]["S"]) if item else {}
            version = int(item["version"]["N"]) if item else 0
            new_state, _replies, response = turn(state, event)
            put: dict[str, Any] = {
                "TableName": self.table,
                "Item": {
                    **key,
                    "state": {"S": json.dumps(new_state)},
                    "version": {"N": str(version + 1)},
                    "ids": {"L": [*ids, {"S": event_id}][-KEEP:]},
                    "response": {"S": json.dumps(response)},
                },
            }
            if item:
                put["ConditionExpression"] = "version = :v"
                put["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
            else:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            try:
                self.client.put_item(**put)
            except self.client.exceptions.ConditionalCheckFailedException:
                continue  # lost a race: read again
            return response

    def state(self, pk: str, sk: str) -> dict[str, Any]:
        got = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        return json.loads(got["Item"]["state"]["S"]) if "Item" in got else {}


class Bare:
    """The floor: ``GetItem`` and an unconditional ``PutItem`` of the same state, nothing else
    (no deduplication, last writer wins)."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def run(self, pk: str, sk: str, idempotency_key: str, turn: Turn, event: Any) -> Any:
        key = {"pk": {"S": pk}, "sk": {"S": sk}}
        got = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        state = json.loads(got["Item"]["state"]["S"]) if "Item" in got else {}
        new_state, _replies, response = turn(state, event)
        self.client.put_item(
            TableName=self.table, Item={**key, "state": {"S": json.dumps(new_state)}}
        )
        return response

    def state(self, pk: str, sk: str) -> dict[str, Any]:
        got = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        return json.loads(got["Item"]["state"]["S"]) if "Item" in got else {}
