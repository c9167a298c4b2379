"""The common way, written out for comparison: an idempotency record as AWS Lambda Powertools'
idempotency utility keeps it, around a session load and save.

Per event, as Powertools (v2/v3, ``DynamoDBPersistenceLayer``) does it:

1. ``PutItem`` the idempotency record ``INPROGRESS``, conditioned on it being absent or
   expired; a conditional failure returns the old record (``ReturnValuesOnConditionCheckFailure``)
   and a ``COMPLETED`` one is answered from it: a duplicate costs that one request;
2. ``GetItem`` the session (consistent);
3. run the handler;
4. ``PutItem`` the session (last writer wins: nothing guards it against a concurrent turn);
5. ``UpdateItem`` the idempotency record to ``COMPLETED`` with the response;
   if the handler raised, ``DeleteItem`` the record instead, so a retry may run.

Both items live in the benchmark's one table under their own partition keys, on the same
engine as ours. It is a faithful request pattern, not Powertools itself (which needs its
decorator's Lambda context); the request and capacity counts are what matter here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

Turn = Callable[[dict[str, Any], Any], tuple[dict[str, Any], list[Any], Any]]


class AlreadyInProgressError(RuntimeError):
    pass


class PowertoolsStyle:
    def __init__(self, client: Any, table: str, *, expires_after: int = 3600) -> None:
        self.client = client
        self.table = table
        self.expires_after = expires_after

    def run(self, pk: str, sk: str, idempotency_key: str, turn: Turn, event: Any) -> Any:
        now = int(time.time())
        record_key = {"pk": {"S": f"idempotency#{idempotency_key}"}, "sk": {"S": "-"}}
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    **record_key,
                    "status": {"S": "INPROGRESS"},
                    "expiration": {"N": str(now + self.expires_after)},
                },
                ConditionExpression="attribute_not_exists(pk) OR expiration < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old = exc.response.get("Item") or {}
            if old.get("status", {}).get("S") == "COMPLETED":
                return json.loads(old["data"]["S"])
            raise AlreadyInProgressError(idempotency_key) from exc

        session_key = {"pk": {"S": pk}, "sk": {"S": sk}}
        try:
            got = self.client.get_item(TableName=self.table, Key=session_key, ConsistentRead=True)
            state = json.loads(got["Item"]["state"]["S"]) if "Item" in got else {}
            new_state, _replies, response = turn(state, event)
            self.client.put_item(
                TableName=self.table,
                Item={**session_key, "state": {"S": json.dumps(new_state)}},
            )
        except Exception:
            self.client.delete_item(TableName=self.table, Key=record_key)
            raise
        self.client.update_item(
            TableName=self.table,
            Key=record_key,
            UpdateExpression="SET #s = :done, #d = :data",
            ExpressionAttributeNames={"#s": "status", "#d": "data"},
            ExpressionAttributeValues={
                ":done": {"S": "COMPLETED"},
                ":data": {"S": json.dumps(response)},
            },
        )
        return response

    def state(self, pk: str, sk: str) -> dict[str, Any]:
        got = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        return json.loads(got["Item"]["state"]["S"]) if "Item" in got else {}
