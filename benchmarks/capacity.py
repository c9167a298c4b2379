"""Count requests and consumed capacity units through botocore's event hooks."""

from __future__ import annotations

from collections import Counter
from typing import Any

from benchmarks.billing import Billing


class Meter:
    """Attach to a client: counts requests per operation and sums read/write units as the
    engine reports them (and as AWS would bill them, with ``probe``).

    It asks DynamoDB for ``ReturnConsumedCapacity=TOTAL`` on every call through the
    ``provide-client-params`` hook, so the code under measurement is not changed.
    """

    def __init__(self, client: Any, *, probe: Any = None) -> None:
        self.requests: Counter[str] = Counter()
        self.read_units = 0.0
        self.write_units = 0.0
        #: What AWS would bill (``benchmarks.billing``), when given a probe client.
        self.billing = Billing(client, probe) if probe is not None else None
        self._events = client.meta.events
        self._hooks = [
            ("provide-client-params.dynamodb.*", self._ask),
            ("before-send.dynamodb", self._sent),
            ("after-call.dynamodb.*", self._consumed),
        ]
        for name, hook in self._hooks:
            self._events.register(name, hook)

    def close(self) -> None:
        """Detach from the client (a meter left attached would tax every later benchmark on
        the same client: the billing probe reads each written item)."""
        for name, hook in self._hooks:
            self._events.unregister(name, hook)
        if self.billing is not None:
            self.billing.close()

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def _ask(params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _sent(self, request: Any, **_: Any) -> None:
        self.requests[request.headers["X-Amz-Target"].decode().split(".")[-1]] += 1

    def _consumed(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity") or []
        if isinstance(consumed, dict):
            consumed = [consumed]
        for entry in consumed:
            units = float(entry.get("CapacityUnits", 0.0))
            if model.name in {"GetItem", "BatchGetItem", "Query", "Scan"}:
                self.read_units += float(entry.get("ReadCapacityUnits", units))
            else:
                self.write_units += float(entry.get("WriteCapacityUnits", units))

    def reset(self) -> None:
        self.requests.clear()
        self.read_units = self.write_units = 0.0
        if self.billing is not None:
            self.billing.reset()
