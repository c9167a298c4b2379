"""Fuzzing both handlers with hypothesis: 5,000 random requests in all (bodies, headers,
query strings, methods, base64 flags), unsigned, wrongly signed and correctly signed.

For every request: no 5xx, no exception out of the handler. For every request without a
valid signature (none, another secret, another body, older than 300 s, Messenger's sha1-only
header): a 4xx, the bot never runs and nothing is written. Correctly signed bodies (random
bytes, and event-shaped bodies with fuzzed fields and crafted ids) may be real events: they
must still never produce a 5xx, and anything they write is under valid keys.
"""

from __future__ import annotations

import base64
import json
import string
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions import Sessions
from sessions.sqlite import SQLiteStore
from sessions.store import EventWrite
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import fake_slack
from tests.reliability.conftest import SpyBot, edges

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


class WriteSpy(SQLiteStore):
    """The real SQLite store, counting every write."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.writes: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def commit(self, write: EventWrite) -> None:
        with self._lock:
            self.writes.append((write.key.pk, write.key.sk))
        super().commit(write)

    def record_failure(self, write: EventWrite) -> None:
        with self._lock:
            self.writes.append((write.key.pk, write.key.sk))
        super().record_failure(write)

    def claim(self, write: EventWrite) -> None:
        with self._lock:
            self.writes.append((write.key.pk, write.key.sk))
        super().claim(write)

    def mark_sent(self, key: Any, event_sk: str, *, sent_at: int) -> None:
        with self._lock:
            self.writes.append((key.pk, event_sk))
        super().mark_sent(key, event_sk, sent_at=sent_at)

    def delete_user(self, user: Any, **kw: Any) -> int:
        with self._lock:
            self.writes.append((user.pk, "*"))
        return super().delete_user(user, **kw)


class World:
    def __init__(self, tmp: Path) -> None:
        self._fake_cm = fake_slack()
        self.fake = self._fake_cm.__enter__()
        self.store = WriteSpy(str(tmp / "fuzz.sqlite3"))
        self.bot = SpyBot()
        self.slack, self.messenger = edges(
            self.fake, Sessions(self.store), self.bot, send_api=None, workers=1
        )
        self.count = 0

    def reset(self) -> None:
        self.store.writes.clear()
        self.bot.turns.clear()

    def close(self) -> None:
        self.store.close()
        self._fake_cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("fuzz"))
    yield w
    w.close()


# -- strategies ------------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
header_names = st.sampled_from(
    [
        "content-type",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "x-slack-retry-num",
        "x-slack-retry-reason",
        "x-hub-signature",
        "x-hub-signature-256",
        "content-length",
        "host",
    ]
) | st.text(string.ascii_lowercase + "-", min_size=1, max_size=20)
headers = st.dictionaries(header_names, st.text(max_size=80), max_size=6)
methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS"])
queries = st.dictionaries(st.text(max_size=15), st.text(max_size=30), max_size=4)
# Ids: mostly valid for the platform, sometimes crafted (separators, unicode, long, types).
crafted = st.sampled_from(["", "#", "U1#C1", "ü", "١٢٣", "A" * 300, "T0001\n", " U1"]) | json_values
slack_ids = st.from_regex(r"[A-Z][A-Z0-9]{2,10}", fullmatch=True) | crafted
psids = st.from_regex(r"[0-9]{3,16}", fullmatch=True) | crafted
texts = st.text(max_size=60) | st.sampled_from(["add x", "list", "done 1", "clear", "help"])


@st.composite
def slack_shaped(draw: st.DrawFn) -> bytes:
    """Event-shaped Slack bodies with fuzzed fields: Events API JSON, slash forms,
    interactivity payloads."""
    kind = draw(st.sampled_from(["event", "slash", "action", "challenge"]))
    team, user, channel = draw(slack_ids), draw(slack_ids), draw(slack_ids)
    if kind == "event":
        event = {
            "type": draw(
                st.sampled_from(["message", "app_mention", "reaction_added"]) | json_values
            ),
            "user": user,
            "channel": channel,
            "text": draw(texts | json_values),
            "channel_type": draw(st.sampled_from(["im", "channel"]) | json_values),
        }
        if draw(st.booleans()):
            event["bot_id"] = "B1"
        body: dict[str, Any] = {
            "type": draw(st.sampled_from(["event_callback", "app_rate_limited"]) | json_values),
            "team_id": team,
            "event_id": draw(slack_ids),
            "event_time": draw(st.integers() | json_values),
            "event": draw(st.just(event) | json_values),
        }
        return json.dumps(body).encode()
    if kind == "challenge":
        return json.dumps({"type": "url_verification", "challenge": draw(json_values)}).encode()
    if kind == "slash":
        fields = {
            "command": draw(st.sampled_from(["/todo", "/other"]) | st.text(max_size=10)),
            "team_id": team,
            "user_id": user,
            "channel_id": channel,
            "text": draw(texts),
            "trigger_id": draw(st.text(max_size=20)),
            "response_url": "http://127.0.0.1:9/response",
        }
        drop = draw(st.sets(st.sampled_from(sorted(fields))))
        return urlencode({k: str(v) for k, v in fields.items() if k not in drop}).encode()
    payload = {
        "type": draw(st.sampled_from(["block_actions", "view_submission"]) | json_values),
        "team": {"id": team},
        "user": {"id": user},
        "channel": {"id": channel},
        "response_url": "http://127.0.0.1:9/response",
        "trigger_id": draw(st.text(max_size=20)),
        "actions": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"action_id": st.sampled_from(["todo_done", "x"]), "value": json_values}
                ),
                max_size=2,
            )
            | json_values
        ),
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


@st.composite
def messenger_shaped(draw: st.DrawFn) -> bytes:
    def messaging() -> Any:
        m: dict[str, Any] = {
            "sender": {"id": draw(psids)},
            "recipient": {"id": draw(psids)},
            "timestamp": draw(st.integers(min_value=-(2**63), max_value=2**63) | json_values),
        }
        part = draw(st.sampled_from(["message", "postback", "delivery", "read", "other"]))
        if part == "message":
            m["message"] = draw(
                st.fixed_dictionaries(
                    {"mid": st.text(max_size=30) | json_values, "text": texts | json_values},
                    optional={"is_echo": st.booleans(), "quick_reply": json_values},
                )
                | json_values
            )
        elif part == "postback":
            m["postback"] = {"mid": draw(st.text(max_size=30)), "payload": draw(json_values)}
        elif part != "other":
            m[part] = draw(json_values)
        return m

    entries = []
    for _ in range(draw(st.integers(0, 3))):
        batch = [messaging() for _ in range(draw(st.integers(0, 3)))]
        entries.append({"id": draw(psids), "time": 1, "messaging": batch})
    body = {"object": draw(st.sampled_from(["page", "instagram"]) | json_values), "entry": entries}
    return json.dumps(draw(st.just(body) | json_values)).encode()


def event_for(
    path: str, method: str, body: bytes, hdrs: dict[str, str], query: dict[str, str], b64: bool
) -> dict[str, Any]:
    event = sr.http_v2(b"", hdrs, path=path, method=method, base64_body=False)
    event["body"] = base64.b64encode(body).decode() if b64 else body.decode("utf-8", "replace")
    event["isBase64Encoded"] = b64
    event["rawQueryString"] = urlencode(query)
    event["queryStringParameters"] = query or None
    return event


def check(world: World, response: dict[str, Any], *, may_reach_bot: bool) -> None:
    status = response["statusCode"]
    assert status < 500, response
    if not may_reach_bot:
        assert world.bot.turns == []
        assert world.store.writes == []
    for pk, _ in world.store.writes:
        platform, workspace, user = pk.split("#")
        assert platform in {"slack", "messenger"} and workspace.isascii() and user.isalnum()


# -- Slack -----------------------------------------------------------------------------------


@settings(FUZZ, max_examples=1000)
@given(
    body=st.binary(max_size=600) | slack_shaped(),
    hdrs=headers,
    query=queries,
    method=methods,
    b64=st.booleans(),
    forge=st.sampled_from(["none", "other-secret", "other-body", "stale"]),
)
def test_slack_without_a_valid_signature(
    world: World,
    body: bytes,
    hdrs: dict[str, str],
    query: dict[str, str],
    method: str,
    b64: bool,
    forge: str,
) -> None:
    world.reset()
    if forge == "other-secret":
        hdrs = {**hdrs, **sr.sign(body, secret="not-the-secret")}
    elif forge == "other-body":
        hdrs = {**hdrs, **sr.sign(body + b" ")}
    elif forge == "stale":
        hdrs = {**hdrs, **sr.sign(body, timestamp=int(time.time()) - 301)}
    response = world.slack.handle(event_for("/slack/events", method, body, hdrs, query, b64))
    check(world, response, may_reach_bot=False)
    assert 400 <= response["statusCode"] < 500


@settings(FUZZ, max_examples=1500)
@given(
    body=st.binary(max_size=600) | slack_shaped(),
    hdrs=headers,
    b64=st.booleans(),
    retry=st.none() | st.integers(1, 3),
)
def test_slack_correctly_signed(
    world: World, body: bytes, hdrs: dict[str, str], b64: bool, retry: int | None
) -> None:
    world.reset()
    # Slack signs the bytes it sends; a base64 flag only changes how API Gateway carries them.
    signed = {**hdrs, **sr.sign(body)}
    if retry is not None:
        signed["x-slack-retry-num"] = str(retry)
    response = world.slack.handle(event_for("/slack/events", "POST", body, signed, {}, b64))
    check(world, response, may_reach_bot=True)


# -- Messenger -------------------------------------------------------------------------------


@settings(FUZZ, max_examples=1000)
@given(
    body=st.binary(max_size=600) | messenger_shaped(),
    hdrs=headers,
    query=queries,
    method=methods,
    b64=st.booleans(),
    forge=st.sampled_from(["none", "sha1-only", "other-secret", "other-body"]),
)
def test_messenger_without_a_valid_signature(
    world: World,
    body: bytes,
    hdrs: dict[str, str],
    query: dict[str, str],
    method: str,
    b64: bool,
    forge: str,
) -> None:
    world.reset()
    hdrs = {k: v for k, v in hdrs.items() if k != "x-hub-signature-256"}
    if forge == "sha1-only":
        import hashlib
        import hmac

        digest = hmac.new(mr.APP_SECRET.encode(), body, hashlib.sha1).hexdigest()
        hdrs["x-hub-signature"] = f"sha1={digest}"
    elif forge == "other-secret":
        hdrs.update(mr.signed(body, secret="not-the-secret"))
    elif forge == "other-body":
        hdrs.update(mr.signed(body + b" "))
    response = world.messenger.handle(
        event_for("/messenger/webhook", method, body, hdrs, query, b64)
    )
    check(world, response, may_reach_bot=False)
    # A GET is the verification handshake: 403 unless the verify token matches.
    assert 400 <= response["statusCode"] < 500


@settings(FUZZ, max_examples=1500)
@given(body=st.binary(max_size=600) | messenger_shaped(), hdrs=headers, b64=st.booleans())
def test_messenger_correctly_signed(
    world: World, body: bytes, hdrs: dict[str, str], b64: bool
) -> None:
    world.reset()
    signed = {**hdrs, **mr.signed(body)}
    response = world.messenger.handle(
        event_for("/messenger/webhook", "POST", body, signed, {}, b64)
    )
    check(world, response, may_reach_bot=True)
