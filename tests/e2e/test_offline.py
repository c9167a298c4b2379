"""The deploy's functions under serverless-offline (`make offline`), serverless.yml unedited:
the offline stage's plain environment values stand in for the SSM references, DynamoDB Local
for the table, a fake Slack and Graph API for the outbound calls. Really signed requests in;
replies out; the state in the table; JSON turn lines on the emulator's output."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sessions import ConversationKey, Sessions
from sessions.dynamodb import DynamoDBStore
from tests import messenger_requests as mr
from tests.dynamodb_local import free_port
from tests.fakes import FakeSlack, fake_slack
from tests.keys import stored
from tests.slack_requests import SECRET, dm_body, sign

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    drop = (
        "SLACK_",
        "MESSENGER_",
        "WHATSAPP_",
        "ASSISTANT_",
        "SESSIONS_",
        "PORT",
        "AWS_LAMBDA",
        "MAKEFLAGS",
        "BOT",
    )
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@contextlib.contextmanager
def serverless_offline(
    dynamodb_endpoint: str,
    local_table: str,
    tmp_path: Path,
    *,
    api_urls: bool = True,
    fake_port: int | None = None,
    **env: str,
) -> Iterator[tuple[str, FakeSlack, Path]]:
    """`make offline` on free ports with DynamoDB Local and the fake APIs; ``env`` on top.
    ``api_urls=False``: no SLACK_API_URL/MESSENGER_API_URL (make offline's own fakes, on
    ``fake_port``, answer)."""
    if not (ROOT / "node_modules" / ".bin" / "serverless").exists():
        pytest.fail("node_modules is missing: run `make package` (make test does) first")
    port = free_port()
    with fake_slack() as fake:
        log = (tmp_path / "offline.log").open("w+")
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "offline", f"PORT={port}"],
            cwd=ROOT,
            env={
                **_env(),
                **{
                    k: v
                    for k, v in fake.edge_env().items()
                    if api_urls or k not in ("SLACK_API_URL", "MESSENGER_API_URL")
                },
                "OFFLINE_LAMBDA_PORT": str(free_port()),
                "OFFLINE_FAKE_PORT": str(fake_port or free_port()),
                "SESSIONS_TABLE": local_table,
                "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, Path(log.name).read_text()
                assert time.monotonic() < deadline, Path(log.name).read_text()
                try:
                    requests.get(f"{url}/messenger/webhook", timeout=2)
                    break
                except requests.ConnectionError:
                    time.sleep(0.5)
            yield url, fake, Path(log.name)
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            output = Path(log.name).read_text()
            log.close()
            print(output[-5000:])


@pytest.fixture
def offline(
    dynamodb_endpoint: str, local_table: str, tmp_path: Path
) -> Iterator[tuple[str, FakeSlack, Path]]:
    with serverless_offline(dynamodb_endpoint, local_table, tmp_path) as running:
        yield running


def turn_lines(log: Path) -> list[dict[str, Any]]:
    """The JSON turn lines (one per delivery) on the emulator's output."""
    turns = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"message":"turn"' in line:
            turns.append(json.loads(line))
    return turns


def test_the_deployed_functions_run_under_serverless_offline(
    offline: tuple[str, FakeSlack, Path],
    local_client: Any,
    local_table: str,
) -> None:
    url, fake, log = offline
    # Meta's verification handshake.
    answer = requests.get(
        f"{url}/messenger/webhook",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": mr.VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
        timeout=30,
    )
    assert (answer.status_code, answer.text) == (200, "1158201444")

    raw = json.dumps(mr.single(mr.text("add water plants", psid="5550001"))).encode()
    headers = {**mr.signed(raw), "Content-Type": "application/json"}
    answer = requests.post(f"{url}/messenger/webhook", data=raw, headers=headers, timeout=30)
    assert (answer.status_code, answer.text) == (200, "EVENT_RECEIVED")
    assert any("water plants" in c.body["message"]["text"] for c in fake.sends())

    body = json.dumps(dm_body("add buy milk")).encode()
    headers = {**sign(body, secret=SECRET), "Content-Type": "application/json"}
    answer = requests.post(f"{url}/slack/events", data=body, headers=headers, timeout=30)
    assert answer.status_code == 200
    assert fake.posts() and "buy milk" in fake.posts()[-1].body["text"]

    unsigned = requests.post(f"{url}/slack/events", data=body, timeout=30)
    assert unsigned.status_code == 401

    sessions = Sessions(DynamoDBStore(local_table, client=local_client))
    slack = sessions.get(stored(ConversationKey.slack(team="T0001", channel="D0001", user="U0001")))
    assert slack is not None and slack.state["items"][0]["text"] == "buy milk"
    fb = sessions.get(stored(ConversationKey.messenger(page=mr.PAGE, psid="5550001")))
    assert fb is not None and fb.state["items"][0]["text"] == "water plants"

    # Telemetry is on, as in Lambda: one JSON turn line per delivery on the function's output.
    assert sorted((t["platform"], t["outcome"]) for t in turn_lines(log)) == [
        ("messenger", "applied"),
        ("slack", "applied"),
    ]


def test_offline_answers_to_its_own_fake_apis_and_make_chat_reads_them(
    dynamodb_endpoint: str, local_table: str, tmp_path: Path
) -> None:
    """With no SLACK_API_URL/MESSENGER_API_URL set, make offline's replies go to the fake APIs
    it serves beside the emulator (never to slack.com or graph.facebook.com), and make chat
    reads them there (``--outbox``)."""
    from handlers.tools.chat import ChatClient

    fake_port = free_port()
    with serverless_offline(
        dynamodb_endpoint, local_table, tmp_path, api_urls=False, fake_port=fake_port
    ) as (url, fake, log):
        secrets = {k: v for k, v in fake.edge_env().items() if not k.endswith("_URL")}
        outbox = f"http://127.0.0.1:{fake_port}"
        slack = ChatClient(url, platform="slack-dm", secrets=secrets, outbox=outbox)
        assert slack.send("add offline milk") == ["Added “offline milk”. You have 1 item."]
        fb = ChatClient(url, platform="messenger", secrets=secrets, outbox=outbox)
        assert fb.send("add offline tea") == ["Added “offline tea”. You have 1 item."]
        assert slack.state() == {"error": "this server does not show state (make run does)"}
        assert fake.calls == []  # the test's own fake (the URLs it did not pass) saw nothing
        assert "make chat ARGS=" in log.read_text()


def test_the_plugin_did_not_replace_osls() -> None:
    """serverless-offline declares serverless@3 as a peer; `.npmrc` keeps npm from installing
    it, so `serverless` is still osls's binary (the maintained fork this project packages
    with), and no second framework sits in node_modules."""
    binary = (ROOT / "node_modules" / ".bin" / "serverless").resolve()
    assert binary.parts[-3:] == ("osls", "bin", "serverless.js"), binary
    assert not (ROOT / "node_modules" / "serverless").exists()
    assert (ROOT / "node_modules" / "serverless-offline" / "package.json").exists()


def test_a_slow_turn_is_handed_off_through_the_emulators_lambda_port(
    dynamodb_endpoint: str, local_table: str, tmp_path: Path
) -> None:
    """A turn the bot declares slow is acked at once and runs in an async self-invoke, as in
    Lambda: `make offline` points that invoke at the emulator, not at AWS."""
    with serverless_offline(
        dynamodb_endpoint, local_table, tmp_path, BOT="benchmarks.slow_bot:bot"
    ) as (url, fake, log):
        body = json.dumps(dm_body("report", event_id="Ev0SLOW")).encode()
        headers = {**sign(body, secret=SECRET), "Content-Type": "application/json"}
        answer = requests.post(f"{url}/slack/events", data=body, headers=headers, timeout=30)
        assert answer.status_code == 200
        assert not fake.posts()  # acked before the five-second turn ran

        raw = json.dumps(mr.single(mr.text("report", psid="5550002"))).encode()
        headers = {**mr.signed(raw), "Content-Type": "application/json"}
        answer = requests.post(f"{url}/messenger/webhook", data=raw, headers=headers, timeout=30)
        assert (answer.status_code, answer.text) == (200, "EVENT_RECEIVED")
        assert not fake.sends()

        deadline = time.monotonic() + 60
        while not (fake.posts() and fake.sends()) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert [p.body["text"] for p in fake.posts()] == ["Report: 0 open items."]
        assert [s.body["message"]["text"] for s in fake.sends()] == ["Report: 0 open items."]
        assert sorted((t["platform"], t["outcome"]) for t in turn_lines(log)) == [
            ("messenger", "applied"),
            ("slack", "applied"),
        ]
