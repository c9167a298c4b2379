"""The common way, for real: AWS Lambda Powertools' idempotency utility (``idempotent_function``
with its ``DynamoDBPersistenceLayer``, installed as a dev dependency) around a session load
and save, in the same table and on the same engine as ours.

Per event Powertools puts its record ``INPROGRESS`` (conditional, old record returned on a
conflict), the function loads the session (``GetItem``), runs the turn and saves it
(``PutItem``: last writer wins), and Powertools marks the record ``COMPLETED`` with the
response (``UpdateItem``); when the function raises, Powertools deletes its record.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

Turn = Callable[[dict[str, Any], Any], tuple[dict[str, Any], list[Any], Any]]

# Outside Lambda there is no context to say the time left; Powertools warns on every call.
warnings.filterwarnings("ignore", message="Couldn't determine the remaining time left")


class Powertools:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table
        self._turn: Turn | None = None
        persistence = DynamoDBPersistenceLayer(
            table_name=table,
            key_attr="pk",
            sort_key_attr="sk",
            static_pk_value=f"idempotency#bench-{uuid.uuid4().hex[:8]}",
            boto3_client=client,
        )
        config = IdempotencyConfig(event_key_jmespath="id", raise_on_no_idempotency_key=True)

        @idempotent_function(
            data_keyword_argument="event", persistence_store=persistence, config=config
        )
        def handle(event: dict[str, Any]) -> Any:
            assert self._turn is not None
            turn = self._turn
            key = {"pk": {"S": event["pk"]}, "sk": {"S": event["sk"]}}
            got = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)
            state = json.loads(got["Item"]["state"]["S"]) if "Item" in got else {}
            new_state, _replies, response = turn(state, event)
            self.client.put_item(
                TableName=self.table, Item={**key, "state": {"S": json.dumps(new_state)}}
            )
            return response

        self._handle = handle

    def run(self, pk: str, sk: str, idempotency_key: str, turn: Turn, event: Any) -> Any:
        outer = self._turn
        self._turn = turn
        try:
            return self._handle(event={"id": idempotency_key, "pk": pk, "sk": sk})
        finally:
            self._turn = outer

    def state(self, pk: str, sk: str) -> dict[str, Any]:
        got = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        return json.loads(got["Item"]["state"]["S"]) if "Item" in got else {}
