"""Billed capacity units by AWS's sizing rules, from the items a request really reads and
writes (DynamoDB Local's ``ConsumedCapacity`` is not what AWS bills: it reports 0 for a
``BatchGetItem`` key that is missing, and nothing for a transaction's ``ConditionCheck``).

Item size (AWS, "DynamoDB item sizes and formats"): attribute names plus values; a string its
UTF-8 bytes, a number 1 byte per two significant digits plus 1, binary its raw bytes, a
boolean or null 1 byte, a list or map 3 bytes plus 1 byte per element plus the elements.

Units (AWS, "DynamoDB read and write operations", and what real DynamoDB reports):

- a strongly consistent read: 1 unit per 4 KB of the item (eventually consistent: half), a
  missing item counts as one read (``GetItem`` and each key of a ``BatchGetItem`` alike); a
  ``Query``: the sum of the items' sizes, rounded up to 4 KB once;
- ``PutItem``/``UpdateItem``/``DeleteItem`` (and each item of a ``BatchWriteItem``): 1 unit
  per 1 KB of the larger of the item before and after (a delete: before); a conditional
  write whose condition fails still consumes the units of the item as it is (at least 1);
- ``TransactWriteItems``: 2 units per 1 KB for each item, a ``ConditionCheck`` included (a
  standalone check reports 2 write units on real DynamoDB). A transaction cancelled by a
  condition reports no capacity; we count it like a committed one over the items as they
  were, which is the upper bound.

Sizes before a write are read with a separate, unmetered client just before the request is
sent, and after an ``UpdateItem`` just after it: the code under measurement is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

KB = 1024
READ_BLOCK = 4 * KB


def value_size(value: Mapping[str, Any]) -> int:
    """The size of one attribute value in the low-level wire format (``{"S": ...}``)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return number_size(str(data))
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in data)
    if kind == "NS":
        return sum(number_size(str(n)) for n in data)
    if kind == "BS":
        return sum(len(b) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    raise ValueError(f"unknown attribute type {kind}")


def number_size(text: str) -> int:
    digits = format(abs(Decimal(text)), "f").replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """The size of an item, by AWS's rules (0 for no item)."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(before: int, after: int, *, transactional: bool = False) -> float:
    units = max(1, math.ceil(max(before, after) / KB))
    return float(units * (2 if transactional else 1))


def read_units(size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_BLOCK))
    return float(units) if consistent else units / 2


class Billing:
    """Attach to a client: sums the read and write units AWS would bill for its requests.

    Args:
        client: the client under measurement (its event hooks are used).
        probe: a second client on the same endpoint, not metered, to read item sizes.
        keys: the table's key attribute names.
    """

    def __init__(self, client: Any, probe: Any, *, keys: tuple[str, ...] = ("pk", "sk")) -> None:
        self.probe = probe
        self.keys = keys
        self.read = 0.0
        self.write = 0.0
        self._before: list[tuple[str, dict[str, Any], int]] = []
        self._consistent = True
        self._requested = 0
        self._events = client.meta.events
        self._events.register("before-parameter-build.dynamodb.*", self._before_send)
        self._events.register("after-call.dynamodb.*", self._after_call)

    def close(self) -> None:
        self._events.unregister("before-parameter-build.dynamodb.*", self._before_send)
        self._events.unregister("after-call.dynamodb.*", self._after_call)

    def reset(self) -> None:
        self.read = self.write = 0.0

    # -- sizes ---------------------------------------------------------------------------------

    def _size_now(self, table: str, key: Mapping[str, Any]) -> int:
        got = self.probe.get_item(TableName=table, Key=dict(key), ConsistentRead=True)
        return item_size(got.get("Item"))

    def _key(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.keys if k in item}

    def _targets(
        self, operation: str, params: Mapping[str, Any]
    ) -> list[tuple[str, dict[str, Any]]]:
        """The (kind, request) of every item a write touches."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            return [(operation, dict(params))]
        if operation == "TransactWriteItems":
            return [next(iter(action.items())) for action in params.get("TransactItems", [])]
        if operation == "BatchWriteItem":  # each put or delete billed as the single request
            targets: list[tuple[str, dict[str, Any]]] = []
            for table, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        targets.append(("PutItem", {"TableName": table, **request["PutRequest"]}))
                    else:
                        delete = request["DeleteRequest"]
                        targets.append(("DeleteItem", {"TableName": table, **delete}))
            return targets
        return []

    def _before_send(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self._before = []
        if model.name in ("GetItem", "Query"):
            self._consistent = bool(params.get("ConsistentRead"))
        elif model.name == "BatchGetItem":
            tables = list(params.get("RequestItems", {}).values())
            self._requested = sum(len(t.get("Keys", [])) for t in tables)
            self._consistent = all(t.get("ConsistentRead") for t in tables)
        for kind, request in self._targets(model.name, params):
            key = self._key(request["Item"]) if kind in ("Put", "PutItem") else request["Key"]
            self._before.append((kind, request, self._size_now(request["TableName"], key)))

    # -- units ---------------------------------------------------------------------------------

    def _after_call(self, http_response: Any, parsed: Mapping[str, Any], model: Any,
                    **_: Any) -> None:  # fmt: skip
        operation = model.name
        failed = "Error" in parsed or getattr(http_response, "status_code", 200) >= 300
        if operation == "GetItem":
            self.read += read_units(item_size(parsed.get("Item")), consistent=self._consistent)
        elif operation == "BatchGetItem":
            self._batch_get(parsed)
        elif operation == "Query":
            size = sum(item_size(i) for i in parsed.get("Items", []))
            self.read += read_units(size, consistent=self._consistent)
        transactional = operation == "TransactWriteItems"
        for kind, request, before in self._before:
            after = before
            if not failed:
                if kind in ("Put", "PutItem"):
                    after = item_size(request["Item"])
                elif kind in ("Update", "UpdateItem"):
                    after = self._size_now(request["TableName"], request["Key"])
                elif kind in ("Delete", "DeleteItem"):
                    after = 0
            self.write += write_units(before, after, transactional=transactional)
        self._before = []

    def _batch_get(self, parsed: Mapping[str, Any]) -> None:
        found = [i for items in parsed.get("Responses", {}).values() for i in items]
        unprocessed = sum(
            len(t.get("Keys", [])) for t in parsed.get("UnprocessedKeys", {}).values()
        )
        for item in found:
            self.read += read_units(item_size(item), consistent=self._consistent)
        missing = max(0, self._requested - len(found) - unprocessed)
        self.read += missing * read_units(0, consistent=self._consistent)
