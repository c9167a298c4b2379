"""The store's DynamoDB client is botocore's own: building it loads no boto3 (whose import
brings s3transfer and the resource layer into every cold start), and it keeps the timeouts,
retries and validation the store sizes for a webhook's deadline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from botocore.config import Config
from sessions.dynamodb_client import make_client
client = make_client(
    region_name="eu-west-1",
    endpoint_url="http://127.0.0.1:9",
    aws_access_key_id="a",
    aws_secret_access_key="b",
    config=Config(max_pool_connections=7),
)
config = client.meta.config
print(json.dumps({
    "loaded": sorted({n.split(".")[0] for n in sys.modules} & {"boto3", "s3transfer"}),
    "service": client.meta.service_model.service_name,
    "region": client.meta.region_name,
    "endpoint": client.meta.endpoint_url,
    # botocore validates each parameter only behind this decorator of the serializer
    "validated": type(client._serializer).__name__ == "ParamValidationDecorator",
    "timeouts": [config.connect_timeout, config.read_timeout],
    "retries": config.retries,
    "keepalive": config.tcp_keepalive,
    "pool": config.max_pool_connections,
}))
"""


def test_the_store_client_is_botocores_own_with_the_stores_settings() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    built = json.loads(done.stdout.strip().splitlines()[-1])
    assert built == {
        "loaded": [],
        "service": "dynamodb",
        "region": "eu-west-1",
        "endpoint": "http://127.0.0.1:9",
        "validated": False,
        "timeouts": [2, 3],
        "retries": {"mode": "standard", "total_max_attempts": 3},
        "keepalive": True,
        "pool": 7,
    }


LISTINGS = """
import json, os, sys
from botocore.exceptions import UnknownServiceError
from sessions.dynamodb_client import make_client

listed = []
listdir = os.listdir
os.listdir = lambda path=".": listed.append(path) or listdir(path)
client = make_client(region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b")
built = len(listed)
loader = client._loader
try:
    loader.load_service_model("s3", "service-2")
    other = "loaded"
except UnknownServiceError:
    other = "unknown"
print(json.dumps({
    "listdir": built,
    "operations": "GetItem" in client.meta.service_model.operation_names,
    "waiter": client.get_waiter("table_exists").name,
    "paginates": client.can_paginate("query"),
    "other service": other,
}))
"""


def test_building_the_client_lists_dynamodbs_models_not_every_services() -> None:
    """botocore's loader checks that a service exists by listing all of its ~450 services'
    directories, twice (service model, endpoint rules): 50 ms of a cold start. The store's
    loader looks in DynamoDB's directory alone, and still finds its waiters and paginators."""
    done = subprocess.run(
        [sys.executable, "-c", LISTINGS], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    built = json.loads(done.stdout.strip().splitlines()[-1])
    assert built["listdir"] <= 4, built  # DynamoDB's own directory, once per model type
    assert built == {**built, "operations": True, "waiter": "TableExists", "paginates": True}
    assert built["other service"] == "unknown"  # the store's session builds DynamoDB's only
