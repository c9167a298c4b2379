"""The DynamoDB client of the sessions store: building it (timeouts and retries sized for a
webhook's deadline), botocore's failures as ours, the capacity DynamoDB reports per thread,
and the table's creation with the schema ``serverless.yml`` declares. botocore is imported on
first use only, and boto3 never (``make_client``)."""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, cast

from sessions.codec import ITEM_LIMIT
from sessions.errors import (
    ItemTooLargeError,
    SessionError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)
from sessions.keys import SEP, ConversationKey

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
}


def convert_error(exc: Exception, table: str) -> SessionError | None:
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


class CapacityMeter:
    """The capacity DynamoDB reports on one client's answers, added up per thread. One meter
    (one pair of botocore hooks) per client, however many stores share it: every data request
    asks for its consumed capacity (no extra request: the answer carries it)."""

    _meters: ClassVar[weakref.WeakKeyDictionary[Any, CapacityMeter]] = weakref.WeakKeyDictionary()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._units = threading.local()

    @classmethod
    def on(cls, client: Any) -> CapacityMeter | None:
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
    """A DynamoDB client with timeouts and retries sized for webhook deadlines.

    Built by botocore itself, on a session of its own (credentials, region and endpoint from
    the environment, as boto3's default session reads them): the client boto3 would build is
    this same botocore client, and importing boto3 loads s3transfer and its resource layer
    (about 60 modules at every cold start) for nothing a client uses."""
    from botocore.config import Config
    from botocore.session import get_session

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
    session = get_session()
    session.register_component("data_loader", _dynamodb_loader(session))
    return cast("DynamoDBClient", session.create_client("dynamodb", config=config, **overrides))


def _dynamodb_loader(session: Any) -> Any:
    """botocore's data loader (the same search paths, ``AWS_DATA_PATH`` first), except that
    it knows one service: DynamoDB, when its models are there.

    Before it loads a model, botocore's loader checks that the service exists by listing every
    service it has: about 450 directories, each listed and its files looked for, once for the
    service model and once for the endpoint rules (some 900 ``listdir`` and 2,800 ``stat``
    calls, 50 ms of CPU on a cold start, more than the rest of building the client but
    reading the models). Asking for DynamoDB's own directory answers the same question.
    """
    from botocore.exceptions import DataNotFoundError
    from botocore.loaders import Loader

    class DynamoDBLoader(Loader):
        def list_available_services(self, type_name: str) -> list[str]:
            try:
                self.list_api_versions("dynamodb", type_name)
            except DataNotFoundError:
                return []
            return ["dynamodb"]

    # As botocore's session builds its loader (``create_loader``): AWS_DATA_PATH's entries
    # searched first, then ~/.aws/models and botocore's own data.
    data_path = session.get_config_variable("data_path")
    extra = (
        [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
        if data_path
        else None
    )
    return DynamoDBLoader(extra_search_paths=extra)


#: The index of partitions by workspace (``ws`` = ``<platform>#<workspace>``), keys only.
WORKSPACE_INDEX = "workspace"


def workspace_of(key: ConversationKey) -> str:
    return f"{key.platform}{SEP}{key.workspace}"


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
                {"AttributeName": "ws", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": WORKSPACE_INDEX,
                    "KeySchema": [{"AttributeName": "ws", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except Exception as exc:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
        if code != "ResourceInUseException":
            error = convert_error(exc, table)
            if error is None:
                raise
            raise error from exc
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
    described = client.describe_table(TableName=table)["Table"]
    if not any(
        i["IndexName"] == WORKSPACE_INDEX for i in described.get("GlobalSecondaryIndexes") or []
    ):
        # A table created before the workspace index: add it (DynamoDB builds it online).
        client.update_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "ws", "AttributeType": "S"}],
            GlobalSecondaryIndexUpdates=[
                {
                    "Create": {
                        "IndexName": WORKSPACE_INDEX,
                        "KeySchema": [{"AttributeName": "ws", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                }
            ],
        )
    try:
        client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
    except Exception as exc:
        message = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Message", ""))
        if "already enabled" not in message.lower():
            error = convert_error(exc, table)
            if error is None:
                raise
            raise error from exc
