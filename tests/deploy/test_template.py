"""The deploy, as CloudFormation will see it: `serverless package` run offline for the dev and
the prod stage (no AWS credentials), and the generated template loaded and checked.

Needs node_modules (osls, serverless-python-requirements): `make package` installs them, and
`make test` runs it before pytest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore

ROOT = Path(__file__).resolve().parents[2]
SERVERLESS = ROOT / "node_modules" / ".bin" / "serverless"

SECRETS = {
    "slack": {"SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"},
    "messenger": {"MESSENGER_APP_SECRET", "MESSENGER_VERIFY_TOKEN", "MESSENGER_PAGE_TOKEN"},
    "whatsapp": {"WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "WHATSAPP_TOKEN"},
}
#: The serial queue's consumer runs every platform's turns.
SECRETS["serial"] = SECRETS["slack"] | SECRETS["messenger"] | SECRETS["whatsapp"]
NOT_SECRETS = {
    "SESSIONS_TABLE",
    "SESSIONS_KMS_KEY_ID",
    "SESSIONS_LARGE_STATE_BUCKET",
    "SESSIONS_LARGE_STATE_ABOVE",
    "SESSIONS_REQUIRE_SEALED",
    "SESSIONS_SERIAL_QUEUE_URL",
    "SESSIONS_TIMER_GROUP",
    "SESSIONS_TIMER_ROLE_ARN",
    "SESSIONS_TIMER_DLQ_ARN",
    "SESSIONS_TIMER_SLACK_ARN",
    "SESSIONS_TIMER_MESSENGER_ARN",
    "SESSIONS_TIMER_WHATSAPP_ARN",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "BOT",
}
ROUTES = {
    "POST /slack/events": "slack",
    "GET /slack/install": "slack",
    "GET /slack/oauth_redirect": "slack",
    "GET /messenger/webhook": "messenger",
    "POST /messenger/webhook": "messenger",
    "GET /whatsapp/webhook": "whatsapp",
    "POST /whatsapp/webhook": "whatsapp",
}
#: The item actions the Lambda code performs on the table (checked against a real run below).
TABLE_ACTIONS = {
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
}


def package(stage: str, out: Path, **extra: str) -> Path:
    if not SERVERLESS.exists():
        pytest.fail("node_modules is missing: run `make package` (make test does) first")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SNAPSTART"))},
        "SLS_PYTHON_BIN": sys.executable,
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
        **extra,
    }
    proc = subprocess.run(
        [str(SERVERLESS), "package", "--stage", stage, "--region", "us-east-1", "--package", out],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    out = {stage: package(stage, tmp_path_factory.mktemp(stage)) for stage in ("dev", "prod")}
    yield out
    # serverless clears .serverless/ when it packages elsewhere; put make package's back.
    target = ROOT / ".serverless"
    if not target.exists():
        shutil.copytree(out["dev"], target, symlinks=True)


def template(packaged: dict[str, Path], stage: str) -> dict[str, Any]:
    path = packaged[stage] / "cloudformation-template-update-stack.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def resources(t: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in t["Resources"].items() if r["Type"] == kind}


def functions(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical id by our function name (slack, messenger)."""
    out = {}
    for name, r in resources(t, "AWS::Lambda::Function").items():
        short = r["Properties"]["FunctionName"].rsplit("-", 1)[-1]
        out[short] = {"id": name, **r}
    return out


def statements(t: dict[str, Any]) -> list[dict[str, Any]]:
    roles = resources(t, "AWS::IAM::Role")
    assert sorted(roles) == ["IamRoleLambdaExecution", "TimerRole"]
    policies = roles["IamRoleLambdaExecution"]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_table_keys_ttl_pitr_and_encryption(packaged: dict[str, Path], stage: str) -> None:
    tables = resources(template(packaged, stage), "AWS::DynamoDB::Table")
    assert list(tables) == ["SessionsTable"]
    props = tables["SessionsTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert sorted((k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]) == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
        "pk": "S",
        "sk": "S",
        "ws": "S",
    }
    # The same schema as sessions.dynamodb.create_table: the workspace index, keys only.
    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "workspace"
    assert index["KeySchema"] == [{"AttributeName": "ws", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_production_keeps_the_table(packaged: dict[str, Path]) -> None:
    prod = resources(template(packaged, "prod"), "AWS::DynamoDB::Table")["SessionsTable"]
    assert prod["DeletionPolicy"] == "Retain"
    assert prod["UpdateReplacePolicy"] == "Retain"
    assert prod["Properties"]["DeletionProtectionEnabled"] is True
    dev = resources(template(packaged, "dev"), "AWS::DynamoDB::Table")["SessionsTable"]
    assert dev["DeletionPolicy"] == "Delete"
    assert dev["Properties"]["DeletionProtectionEnabled"] is False


def test_http_routes_reach_the_right_function(packaged: dict[str, Path]) -> None:
    t = template(packaged, "dev")
    fns = functions(t)
    assert set(fns) == {"slack", "messenger", "whatsapp", "serial"}
    assert fns["slack"]["Properties"]["Handler"] == "handlers/slack.handler"
    assert fns["messenger"]["Properties"]["Handler"] == "handlers/messenger.handler"
    assert fns["whatsapp"]["Properties"]["Handler"] == "handlers/whatsapp.handler"
    for fn in fns.values():
        assert fn["Properties"]["Runtime"] == "python3.12"
        assert fn["Properties"]["Architectures"] == ["arm64"]
    integrations = resources(t, "AWS::ApiGatewayV2::Integration")
    routes = resources(t, "AWS::ApiGatewayV2::Route")
    seen = {}
    for route in routes.values():
        props = route["Properties"]
        integration_id = props["Target"]["Fn::Join"][1][1]["Ref"]
        uri = integrations[integration_id]["Properties"]["IntegrationUri"]
        target = uri["Fn::GetAtt"][0]
        seen[props["RouteKey"]] = next(n for n, f in fns.items() if f["id"] == target)
        assert integrations[integration_id]["Properties"]["PayloadFormatVersion"] == "2.0"
    assert seen == ROUTES


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_secrets_are_ssm_references_never_values(packaged: dict[str, Path], stage: str) -> None:
    t = template(packaged, stage)
    for name, fn in functions(t).items():
        env = fn["Properties"]["Environment"]["Variables"]
        plain = {k: v for k, v in env.items() if k in NOT_SECRETS}
        timers = {k: plain.pop(k) for k in list(plain) if k.startswith("SESSIONS_TIMER_")}
        assert len(timers) == 6  # the timers' (test_timers_are_schedules_of_a_group_...)
        assert plain == {
            "SESSIONS_TABLE": {"Ref": "SessionsTable"},
            "SESSIONS_KMS_KEY_ID": {"Fn::GetAtt": ["SessionsKey", "Arn"]},  # on by default
            "SESSIONS_LARGE_STATE_BUCKET": {"Ref": "LargeStateBucket"},
            "SESSIONS_LARGE_STATE_ABOVE": "65536",
            "SESSIONS_REQUIRE_SEALED": "on",  # strict: a clear value is refused
            "SESSIONS_SERIAL_QUEUE_URL": {"Ref": "SerialQueue"},
            "POWERTOOLS_SERVICE_NAME": "chat-sessions",
            "POWERTOOLS_METRICS_NAMESPACE": "ChatSessions",
            "BOT": os.environ.get("BOT", "examples.todo:bot"),  # not a secret: a name
        }
        secret_vars = {k for k in env if k not in NOT_SECRETS}
        # Each function gets its own platform's secrets and no other.
        assert secret_vars == SECRETS[name]
        for var in secret_vars:
            parameter = var.lower().replace("_", "-")
            assert env[var] == f"{{{{resolve:ssm:/chat-sessions/{stage}/{parameter}}}}}"


def test_every_statement_we_add_names_its_resources(packaged: dict[str, Path]) -> None:
    t = template(packaged, "prod")
    fns = functions(t)
    own_arns = []
    sends: list[str] = []
    kms_conditions: list[dict[str, Any]] = []
    timer_statements: list[str] = []
    for name, stmt in ((n, s) for n, s in enumerate(statements(t))):
        actions = as_list(stmt["Action"])
        resources_ = as_list(stmt["Resource"])
        assert stmt["Effect"] == "Allow", name
        assert all("*" not in a for a in actions), stmt
        assert "*" not in resources_, stmt
        services = {a.split(":")[0] for a in actions}
        if services == {"logs"}:
            # The framework's own log statements: scoped to this stage's log groups.
            assert all(
                "log-group:/aws/lambda/chat-sessions-prod" in r["Fn::Sub"] for r in resources_
            )
        elif services == {"dynamodb"}:
            assert set(actions) == TABLE_ACTIONS
            table_arn = {"Fn::GetAtt": ["SessionsTable", "Arn"]}
            assert resources_ == [table_arn, {"Fn::Join": ["/", [table_arn, "index", "workspace"]]}]
        elif services == {"lambda"}:
            assert actions == ["lambda:InvokeFunction"]
            own_arns = [r["Fn::Join"][1][-1] for r in resources_]
        elif services == {"sqs"} and actions == ["sqs:SendMessage"]:
            # The failure destination (the framework's), and the serialised path (ours).
            assert resources_ in (
                [{"Fn::GetAtt": ["DeferredFailures", "Arn"]}],
                [{"Fn::GetAtt": ["SerialQueue", "Arn"]}],
            )
            sends.append(resources_[0]["Fn::GetAtt"][0])
        elif services == {"sqs"}:
            # The serial queue's event source (the framework's): its consumer reads, deletes.
            assert sorted(actions) == [
                "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"
            ]  # fmt: skip
            assert resources_ == [{"Fn::GetAtt": ["SerialQueue", "Arn"]}]
        elif services == {"kms"}:
            # Only the two data-key actions, only on our key, only under a condition: the
            # code's encryption context, or S3 acting for the large-state bucket.
            assert sorted(actions) == ["kms:Decrypt", "kms:GenerateDataKey"]
            assert resources_ == [{"Fn::GetAtt": ["SessionsKey", "Arn"]}]
            kms_conditions.append(stmt["Condition"]["StringEquals"])
        elif services == {"scheduler"} and "scheduler:ListSchedules" not in actions:
            # Timers: schedules of the stage's group only.
            assert sorted(actions) == ["scheduler:CreateSchedule", "scheduler:DeleteSchedule"]
            (arn,) = resources_
            assert arn["Fn::Join"][1][-2:] == [{"Ref": "TimerGroup"}, "/*"]
            timer_statements.append("write")
        elif services == {"scheduler"}:
            assert actions == ["scheduler:ListSchedules"]
            (arn,) = resources_
            assert arn["Fn::Join"][1][-1] == ":schedule/*/*"
            timer_statements.append("list")
        elif services == {"iam"}:
            # Passing the timers' role, only it, only to the scheduler.
            assert actions == ["iam:PassRole"] and resources_ == [
                {"Fn::GetAtt": ["TimerRole", "Arn"]}
            ]
            assert stmt["Condition"] == {
                "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
            }
            timer_statements.append("pass")
        elif services == {"s3"}:
            assert sorted(actions) == ["s3:GetObject", "s3:PutObject"]
            assert resources_ == [
                {"Fn::Join": ["", [{"Fn::GetAtt": ["LargeStateBucket", "Arn"]}, "/*"]]}
            ]
        else:
            pytest.fail(f"unexpected statement {stmt}")
    assert sorted(kms_conditions, key=str) == [
        {"kms:EncryptionContext:purpose": "chat-sessions data key"},
        {"kms:ViaService": "s3.us-east-1.amazonaws.com"},
    ]
    # The async hand-off may invoke exactly our three functions, nothing else.
    assert sorted(own_arns) == sorted(f["Properties"]["FunctionName"] for f in fns.values())
    # The failure destination once per function (the framework's), the queue once (ours).
    assert sorted(set(sends)) == ["DeferredFailures", "SerialQueue"]
    assert sends.count("SerialQueue") == 1
    assert sorted(timer_statements) == ["list", "pass", "write"]


def test_timers_are_schedules_of_a_group_per_stage_invoking_only_our_functions(
    packaged: dict[str, Path],
) -> None:
    t = template(packaged, "prod")
    (group,) = resources(t, "AWS::Scheduler::ScheduleGroup").values()
    assert group["Properties"]["Name"] == "chat-sessions-prod"
    role = resources(t, "AWS::IAM::Role")["TimerRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    (policy,) = role["Policies"]
    invoke, dead_letter = policy["PolicyDocument"]["Statement"]
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert [r["Fn::Join"][1][-1] for r in invoke["Resource"]] == [
        "chat-sessions-prod-slack",
        "chat-sessions-prod-messenger",
        "chat-sessions-prod-whatsapp",
    ]
    assert dead_letter == {
        "Effect": "Allow",
        "Action": "sqs:SendMessage",
        "Resource": {"Fn::GetAtt": ["TimerFailures", "Arn"]},
    }
    queue = resources(t, "AWS::SQS::Queue")["TimerFailures"]["Properties"]
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600 and queue["SqsManagedSseEnabled"]
    alarms = resources(t, "AWS::CloudWatch::Alarm")
    assert alarms["TimerFailuresAlarm"]["Properties"]["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["TimerFailures", "QueueName"]
    }
    for fn in functions(t).values():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["SESSIONS_TIMER_GROUP"] == {"Ref": "TimerGroup"}
        assert env["SESSIONS_TIMER_ROLE_ARN"] == {"Fn::GetAtt": ["TimerRole", "Arn"]}
        assert env["SESSIONS_TIMER_DLQ_ARN"] == {"Fn::GetAtt": ["TimerFailures", "Arn"]}
        assert env["SESSIONS_TIMER_SLACK_ARN"]["Fn::Join"][1][-1] == "chat-sessions-prod-slack"


def test_deferred_turns_that_keep_failing_are_kept(packaged: dict[str, Path]) -> None:
    t = template(packaged, "prod")
    fns = functions(t)
    configs = resources(t, "AWS::Lambda::EventInvokeConfig")
    by_function = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"] for c in configs.values()
    }
    assert set(by_function) == {f["id"] for f in fns.values()}
    for config in by_function.values():
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["DeferredFailures", "Arn"]
        }
        assert config["MaximumRetryAttempts"] >= 1
    queue = resources(t, "AWS::SQS::Queue")["DeferredFailures"]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_outputs_name_the_urls_to_paste(packaged: dict[str, Path]) -> None:
    outputs = template(packaged, "prod")["Outputs"]
    assert outputs["SlackEventsUrl"]["Value"]["Fn::Join"][1][1] == "/slack/events"
    assert outputs["MessengerWebhookUrl"]["Value"]["Fn::Join"][1][1] == "/messenger/webhook"
    assert outputs["WhatsAppWebhookUrl"]["Value"]["Fn::Join"][1][1] == "/whatsapp/webhook"


def test_the_zip_passes_the_package_check(packaged: dict[str, Path]) -> None:
    zip_path = packaged["prod"] / "chat-sessions.zip"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_package.py"), str(zip_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = zipfile.ZipFile(zip_path).namelist()
    assert "handlers/slack.py" in names
    assert not any(n.startswith(("tests/", "node_modules/", "boto3/")) for n in names)


def test_the_package_check_rejects_a_bad_zip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("handlers/slack.py", "")
        archive.writestr("tests/test_x.py", "")
        archive.writestr("node_modules/x/index.js", "")
        archive.writestr("charset_normalizer/md.cpython-312-x86_64-linux-gnu.so", b"")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_package.py"), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    for expected in (
        "missing sessions/runner.py",
        "missing runtime dependency slack_bolt",
        "must not ship tests/test_x.py",
        "must not ship node_modules/x/index.js",
        "not built for arm64",
    ):
        assert expected in proc.stderr


def test_the_package_check_imports_the_configured_bot_from_the_zip(tmp_path: Path) -> None:
    """``make package BOT=mybot:bot`` without ``mybot.py`` in the zip fails by name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "check_package", ROOT / "scripts" / "check_package.py"
    )
    assert spec is not None and spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    zipped = tmp_path / "bot.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("shipped.py", "bot = object()\n")
    assert check.bot_check(zipped, "shipped:bot") == []
    [problem] = check.bot_check(zipped, "mybot:bot")
    assert "BOT=mybot:bot does not import from the zip" in problem
    assert "No module named 'mybot'" in problem and "package.patterns" in problem


def _iam_actions(operation: str, params: dict[str, Any]) -> set[str]:
    if operation != "TransactWriteItems":
        return {f"dynamodb:{operation}"}
    kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
    kinds["ConditionCheck"] = "ConditionCheckItem"
    return {f"dynamodb:{kinds[k]}" for item in params["TransactItems"] for k in item}


def test_the_policy_covers_what_a_turn_really_does(packaged: dict[str, Path]) -> None:
    """Every DynamoDB call of a turn (new, duplicate, conflict, sent-mark mode, a busy
    conversation's page and a redelivery found in it), mapped to the
    IAM actions that authorise it, is granted by the template; nothing granted goes unused."""
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        from sessions.dynamodb import create_table

        create_table(client, "t")
        used: set[str] = set()

        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            used.update(_iam_actions(model.name, params))

        client.meta.events.register("before-parameter-build.dynamodb", record)
        key = ConversationKey.slack(team="T1", channel="C1", user="U1")

        def turn(state: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[str], str]:
            return {"n": state.get("n", 0) + 1}, ["ok"], "ok"

        for sent_mark in (False, True):
            sessions = Sessions(DynamoDBStore("t", client=client), sent_mark=sent_mark)
            sessions.run(key, f"Ev{sent_mark}", turn, None, sender=lambda k, r: None)
            sessions.run(key, f"Ev{sent_mark}", turn, None, sender=lambda k, r: None)
        sessions.claim(key, "effect:1", event_time=None)  # a bot's effect
        busy = ConversationKey.slack(team="T1", channel="C2", user="U1")
        sessions = Sessions(DynamoDBStore("t", client=client))
        start = time.time() - 3600
        for i in range(60):  # fills the item: its records move out to a page
            sessions.run(busy, f"busy{i}", turn, None, event_time=start + i * 0.5)
        assert sessions.run(busy, "busy0", turn, None, event_time=start).duplicate
        # A Slack install: a state issued and consumed, the installation saved and read.
        from handlers.slack.installs import TableInstallationStore, TableOAuthStateStore
        from handlers.slack.oauth import installation_of

        states = TableOAuthStateStore(sessions.installations, secret="client-secret")
        assert states.consume(states.issue())
        installs = TableInstallationStore(sessions.installations)
        installs.save(installation_of({"access_token": "xoxb-1", "team": {"id": "T1"}}))
        assert installs.find_bot(enterprise_id=None, team_id="T1") is not None
        # Its uninstall: the workspace's partitions found by the index, then deleted.
        assert sessions.erase_workspace("slack", "T1") > 0
    granted: set[str] = set()
    for stmt in statements(template(packaged, "prod")):
        actions = as_list(stmt["Action"])
        if any(a.startswith("dynamodb:") for a in actions):
            granted.update(actions)
    assert used == granted == TABLE_ACTIONS


def test_the_sessions_key_rotates_and_only_the_account_administers_it(
    packaged: dict[str, Path],
) -> None:
    from sessions.encryption import CONTEXT

    for stage, kept in (("dev", "Delete"), ("prod", "Retain")):
        key = resources(template(packaged, stage), "AWS::KMS::Key")["SessionsKey"]
        assert key["DeletionPolicy"] == kept
        props = key["Properties"]
        assert props["EnableKeyRotation"] is True and props["KeySpec"] == "SYMMETRIC_DEFAULT"
        [stmt] = props["KeyPolicy"]["Statement"]
        # AWS's default key policy: the account's root, so IAM decides; no one else named.
        assert stmt["Principal"] == {
            "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
        }
        assert stmt["Effect"] == "Allow"
    # The condition the role's statement sets is the context the code passes.
    assert CONTEXT == {"purpose": "chat-sessions data key"}


def test_the_large_state_bucket_is_private_encrypted_and_expires(
    packaged: dict[str, Path],
) -> None:
    t = template(packaged, "prod")
    bucket = resources(t, "AWS::S3::Bucket")["LargeStateBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    props = bucket["Properties"]
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["SessionsKey", "Arn"]},
    }
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"],
        True,
    )
    [expiry] = props["LifecycleConfiguration"]["Rules"]
    # Expiry after the sessions' idle TTL (7 days by default), never before it.
    assert expiry["Status"] == "Enabled" and expiry["ExpirationInDays"] * 86400 > 7 * 86400
    policy = resources(t, "AWS::S3::BucketPolicy")["LargeStateBucketPolicy"]["Properties"]
    [tls] = policy["PolicyDocument"]["Statement"]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }


def test_alarms_dashboard_and_json_logs(packaged: dict[str, Path]) -> None:
    from handlers.telemetry import NAMESPACE, OUTCOME_METRICS, SERVICE

    t = template(packaged, "prod")
    alarms = resources(t, "AWS::CloudWatch::Alarm")
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    # Dead letters, per platform, on the metric the code emits, with its dimensions.
    for platform in ("slack", "messenger"):
        props = alarms[f"{platform.capitalize()}DeadLettersAlarm"]["Properties"]
        assert (props["Namespace"], props["MetricName"]) == (
            NAMESPACE,
            OUTCOME_METRICS["dead_lettered"],
        )
        assert props["Dimensions"] == [
            {"Name": "service", "Value": SERVICE},
            {"Name": "platform", "Value": platform},
        ]
        assert props["Threshold"] == 1
    rate = alarms["Http5xxRateAlarm"]["Properties"]["Metrics"]
    assert {m["Id"]: m.get("MetricStat", {}).get("Metric", {}).get("MetricName") for m in rate} == {
        "rate": None,
        "errors": "5xx",
        "requests": "Count",
    }
    throttled = alarms["ThrottlingAlarm"]["Properties"]["Metrics"]
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in throttled if "MetricStat" in m}
    assert names == {"ReadThrottleEvents", "WriteThrottleEvents", "Throttles"}
    for queue in ("DeferredFailures", "SerialFailures"):
        depth = alarms[f"{queue}Alarm"]["Properties"]
        assert depth["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert depth["Dimensions"] == [
            {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
        ]
    body, names_ = resources(t, "AWS::CloudWatch::Dashboard")["Dashboard"]["Properties"][
        "DashboardBody"
    ]["Fn::Sub"]
    assert names_["Service"] == SERVICE
    widgets = json.loads(body.replace("${", "{"))["widgets"]
    assert len(widgets) == 5
    for fn in functions(t).values():
        assert fn["Properties"]["LoggingConfig"]["LogFormat"] == "JSON"


def test_busy_turns_go_to_a_fifo_queue_consumed_one_item_at_a_time(
    packaged: dict[str, Path],
) -> None:
    t = template(packaged, "prod")
    queues = resources(t, "AWS::SQS::Queue")
    serial = queues["SerialQueue"]["Properties"]
    assert serial["FifoQueue"] is True and serial["SqsManagedSseEnabled"] is True
    assert serial["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["SerialFailures", "Arn"]
    }
    assert queues["SerialFailures"]["Properties"]["FifoQueue"] is True
    fns = functions(t)
    consumer = fns["serial"]["Properties"]
    assert consumer["Handler"] == "handlers/serial.handler"
    assert serial["VisibilityTimeout"] >= 6 * consumer["Timeout"]
    [mapping] = resources(t, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["SerialQueue", "Arn"]}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Every function knows the queue (a busy turn may come from either edge, or from a
    # serialised turn's follow-up).
    for fn in fns.values():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["SESSIONS_SERIAL_QUEUE_URL"] == {"Ref": "SerialQueue"}


def test_the_scheduler_policy_covers_what_timers_really_do(packaged: dict[str, Path]) -> None:
    """Every EventBridge Scheduler call of a timer's life (set, replaced, cancelled, the
    user's deleted) is granted, and nothing granted goes unused."""
    from moto import mock_aws

    from handlers.pipeline.timers import cron_expression
    from sessions.eventbridge import EventBridgeScheduler
    from sessions.schedules import Schedule

    with mock_aws():
        client = boto3.client("scheduler", region_name="us-east-1")
        client.create_schedule_group(Name="g")
        used: set[str] = set()
        client.meta.events.register(
            "before-parameter-build.scheduler",
            lambda model, **_: used.add(f"scheduler:{model.name}"),
        )
        scheduler = EventBridgeScheduler(
            "g", targets={"slack": "arn:aws:lambda:us-east-1:1:function:f"},
            role_arn="arn:aws:iam::1:role/r", cron_expression=cron_expression, client=client,
        )  # fmt: skip
        for name, cron in (("t.a.b.1", None), ("t.a.b.2", "0 9 * * MON-FRI")):
            scheduler.create(Schedule(name, time.time() + 600, {}, cron, "UTC", "slack"))
        scheduler.create(Schedule("t.a.b.1", time.time() + 600, {}, None, "UTC", "slack"))
        scheduler.delete("t.a.b.1")
        scheduler.delete("t.a.b.1")  # gone already: fine
        assert scheduler.delete_prefix("t.a.") == 1
    granted: set[str] = set()
    for stmt in statements(template(packaged, "prod")):
        granted.update(a for a in as_list(stmt["Action"]) if a.startswith("scheduler:"))
    assert (
        used
        == granted
        == {
            "scheduler:CreateSchedule",
            "scheduler:DeleteSchedule",
            "scheduler:ListSchedules",
        }
    )


# -- SnapStart (opt-in) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    out = package("dev", tmp_path_factory.mktemp("snapstart"), SNAPSTART="true")
    yield {
        "dir": out,
        "template": json.loads((out / "cloudformation-template-update-stack.json").read_text()),
    }
    target = ROOT / ".serverless"
    if not target.exists():
        shutil.copytree(out, target, symlinks=True)


def _timer_arns(t: dict[str, Any]) -> list[str]:
    """The function names (with any qualifier) the timers' role may invoke."""
    policy = resources(t, "AWS::IAM::Role")["TimerRole"]["Properties"]["Policies"][0]
    [invoke] = [
        s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "lambda:InvokeFunction"
    ]
    return [r["Fn::Join"][1][-1] for r in invoke["Resource"]]


def test_snapstart_is_off_unless_asked_for(packaged: dict[str, Path]) -> None:
    t = template(packaged, "dev")
    assert not resources(t, "AWS::Lambda::Alias")
    for fn in functions(t).values():
        assert "SnapStart" not in fn["Properties"]
    assert _timer_arns(t) == [
        "chat-sessions-dev-slack",
        "chat-sessions-dev-messenger",
        "chat-sessions-dev-whatsapp",
    ]


def test_snapstart_on_publishes_versions_and_routes_and_timers_use_the_alias(
    snapstart: dict[str, Any],
) -> None:
    t = snapstart["template"]
    fns = functions(t)
    for name in ("slack", "messenger", "whatsapp"):
        assert fns[name]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        env = fns[name]["Properties"]["Environment"]["Variables"]
        for var in (
            "SESSIONS_TIMER_SLACK_ARN",
            "SESSIONS_TIMER_MESSENGER_ARN",
            "SESSIONS_TIMER_WHATSAPP_ARN",
        ):
            assert env[var]["Fn::Join"][1][-1].endswith(":snapstart")
    # The serial consumer runs no snapshot hooks (not on an ack's path): no SnapStart.
    assert "SnapStart" not in fns["serial"]["Properties"]
    aliases = resources(t, "AWS::Lambda::Alias")
    assert {a["Properties"]["Name"] for a in aliases.values()} == {"snapstart"}
    assert {a["Properties"]["FunctionName"]["Ref"] for a in aliases.values()} == {
        fns["slack"]["id"],
        fns["messenger"]["id"],
        fns["whatsapp"]["id"],
    }
    for integration in resources(t, "AWS::ApiGatewayV2::Integration").values():
        uri = integration["Properties"]["IntegrationUri"]
        assert uri["Fn::Join"][1][-1] == "snapstart", uri
    for permission in resources(t, "AWS::Lambda::Permission").values():
        if permission["Properties"]["Principal"] == "apigateway.amazonaws.com":
            assert permission["Properties"]["FunctionName"]["Fn::Join"][1][-1] == "snapstart"
    assert _timer_arns(t) == [
        "chat-sessions-dev-slack:snapstart",
        "chat-sessions-dev-messenger:snapstart",
        "chat-sessions-dev-whatsapp:snapstart",
    ]


def test_snapstart_template_is_cfn_lint_clean(snapstart: dict[str, Any]) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run(
        [str(cfn_lint), "--non-zero-exit-code", "error", "--ignore-checks", "W3005", "--",
         str(snapstart["dir"] / "cloudformation-template-update-stack.json")],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_zip_carries_the_runtimes_bytecode_for_every_module(packaged: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(packaged["dev"] / "chat-sessions.zip").namelist())
    for source in ("handlers/slack.py", "sessions/runner.py", "slack_sdk/web/client.py"):
        folder, _, file = source.rpartition("/")
        assert f"{folder}/__pycache__/{file[:-3]}.cpython-312.pyc" in names, source


def _rezip(source: Path, target: Path, change: Any) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = change(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info, data)
    return target


def _check(zip_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_package.py"), str(zip_path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_package_check_rejects_a_zip_without_good_bytecode(
    packaged: dict[str, Path], tmp_path: Path
) -> None:
    zip_path = packaged["dev"] / "chat-sessions.zip"
    # As serverless packaged it before the bytecode step: every cold start compiles.
    bare = _rezip(zip_path, tmp_path / "bare.zip", lambda n, d: None if n.endswith(".pyc") else d)
    proc = _check(bare)
    assert proc.returncode == 1
    assert "no bytecode for " in proc.stderr
    assert "files without good bytecode" in proc.stderr
    # A source changed after compiling: its unchecked pyc would run the old code.
    stale = _rezip(
        zip_path,
        tmp_path / "stale.zip",
        lambda n, d: d + b"\nX = 1\n" if n == "handlers/text.py" else d,
    )
    proc = _check(stale)
    assert proc.returncode == 1
    assert "stale bytecode for handlers/text.py" in proc.stderr
