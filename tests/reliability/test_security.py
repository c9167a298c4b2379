"""Security cases, each answered with a 4xx, the bot never running and nothing stored:
replayed and forged Slack signatures, Messenger's sha1-only header, and correctly signed
events whose ids are crafted to collide or escape the key layout (``#``, unicode digits and
letters, very long, empty, wrong types)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessions import Sessions
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import FakeSlack
from tests.reliability.conftest import SpyBot, edges
from tests.reliability.test_fuzz import WriteSpy


class Guarded:
    def __init__(self, fake: FakeSlack, tmp: Path) -> None:
        self.store = WriteSpy(str(tmp / "security.sqlite3"))
        self.bot = SpyBot()
        self.slack, self.messenger = edges(fake, Sessions(self.store), self.bot)
        self.fake = fake

    def rejected(self, response: dict[str, Any], *statuses: int) -> None:
        assert response["statusCode"] in statuses, response
        assert self.bot.turns == []
        assert self.store.writes == []
        assert self.fake.calls == []


@pytest.fixture
def guarded(fake: FakeSlack, tmp_path: Path) -> Iterator[Guarded]:
    g = Guarded(fake, tmp_path)
    yield g
    g.store.close()


# -- Slack signatures --------------------------------------------------------------------------


def test_slack_replayed_signature_older_than_300_s(guarded: Guarded) -> None:
    body = sr.dm_body("add x")
    old = int(time.time()) - 301
    guarded.rejected(guarded.slack.handle(sr.json_event(body, timestamp=old)), 401)
    # The same captured request replayed with a fresh timestamp header: the signature no
    # longer matches (the timestamp is inside the signed base string).
    event = sr.json_event(body, timestamp=old)
    event["headers"]["x-slack-request-timestamp"] = str(int(time.time()))
    guarded.rejected(guarded.slack.handle(event), 401)


def test_slack_signature_from_the_future_is_refused(guarded: Guarded) -> None:
    future = int(time.time()) + 301
    guarded.rejected(
        guarded.slack.handle(sr.json_event(sr.dm_body("add x"), timestamp=future)), 401
    )


def test_slack_signature_for_another_body(guarded: Guarded) -> None:
    signed_for = json.dumps(sr.dm_body("list")).encode()
    sent = json.dumps(sr.dm_body("clear")).encode()
    headers = {"content-type": "application/json", **sr.sign(signed_for)}
    guarded.rejected(guarded.slack.handle(sr.http_v2(sent, headers, base64_body=False)), 401)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: {**h, "x-slack-signature": h["x-slack-signature"].replace("v0=", "v1=")},
        lambda h: {**h, "x-slack-signature": h["x-slack-signature"].upper()},
        lambda h: {**h, "x-slack-signature": h["x-slack-signature"][:-1]},
        lambda h: {k: v for k, v in h.items() if k != "x-slack-signature"},
        lambda h: {k: v for k, v in h.items() if k != "x-slack-request-timestamp"},
        lambda h: {**h, "x-slack-request-timestamp": "\u0661\u0667" + "\u0660" * 8},
        lambda h: {**h, "x-slack-signature": "v0=é" + h["x-slack-signature"][4:]},
    ],
    ids=["version", "case", "truncated", "no-signature", "no-timestamp", "unicode-ts", "unicode"],
)
def test_slack_mangled_signature_headers(guarded: Guarded, mangle: Any) -> None:
    raw = json.dumps(sr.dm_body("add x")).encode()
    headers = mangle({"content-type": "application/json", **sr.sign(raw)})
    guarded.rejected(guarded.slack.handle(sr.http_v2(raw, headers, base64_body=False)), 401)


# -- Messenger signatures ----------------------------------------------------------------------


def test_messenger_sha1_only_header(guarded: Guarded) -> None:
    raw = json.dumps(mr.single(mr.text("add x"))).encode()
    sha1 = hmac.new(mr.APP_SECRET.encode(), raw, hashlib.sha1).hexdigest()
    headers = {"content-type": "application/json", "x-hub-signature": f"sha1={sha1}"}
    guarded.rejected(guarded.messenger.handle(mr.post(raw, headers=headers)), 401)


def test_messenger_signature_for_another_body(guarded: Guarded) -> None:
    signed_for = json.dumps(mr.single(mr.text("list"))).encode()
    sent = json.dumps(mr.single(mr.text("clear"))).encode()
    guarded.rejected(guarded.messenger.handle(mr.post(sent, headers=mr.signed(signed_for))), 403)


def test_messenger_signature_with_another_secret(guarded: Guarded) -> None:
    raw = json.dumps(mr.single(mr.text("add x"))).encode()
    guarded.rejected(guarded.messenger.handle(mr.post(raw, secret="someone-else")), 403)


def test_messenger_verification_with_a_wrong_token(guarded: Guarded) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "42"}
    guarded.rejected(guarded.messenger.handle(mr.verify(params)), 403)
    params["hub.verify_token"] = "ü" + mr.VERIFY_TOKEN
    guarded.rejected(guarded.messenger.handle(mr.verify(params)), 403)


# -- crafted ids, correctly signed ------------------------------------------------------------

CRAFTED = [
    "U0001#D0001",  # would join two key parts
    "U0001#evt#X",  # would address an event record
    "#tombstone",  # would address the tombstone
    "ü0001",  # unicode letter
    "U\u0661\u0662\u0663",  # Arabic-Indic digits (str.isdigit() is True for them)
    "U" * 33,  # one over Slack's 32
    "A" * 5000,  # very long
    "",  # empty
    "u0001",  # lower case: not a Slack id
    "U0001\n",  # trailing newline ($ in a regex would accept it)
]


@pytest.mark.parametrize("field", ["user", "channel", "team"])
@pytest.mark.parametrize("value", CRAFTED)
def test_slack_crafted_ids_in_events(guarded: Guarded, field: str, value: str) -> None:
    kwargs = {"user": "U0001", "channel": "D0001", "team": "T0001", field: value}
    body = sr.dm_body("add x", **kwargs)
    guarded.rejected(guarded.slack.handle(sr.json_event(body)), 400)


@pytest.mark.parametrize("value", CRAFTED)
def test_slack_crafted_ids_in_slash_commands(guarded: Guarded, value: str) -> None:
    guarded.rejected(guarded.slack.handle(sr.slash("add x", user=value)), 400)


@pytest.mark.parametrize("value", CRAFTED)
def test_slack_crafted_ids_in_button_presses(guarded: Guarded, value: str) -> None:
    guarded.rejected(guarded.slack.handle(sr.block_action("1", channel=value)), 400)


MESSENGER_CRAFTED = [
    "5550001#100200300",
    "#tombstone",
    "\u0661\u0662\u0663\u0664",  # Arabic-Indic digits
    "\uff15\uff15\uff15",  # fullwidth digits
    "5" * 33,
    "9" * 5000,
    "",
    "-1",
    "5550001\n",
]


@pytest.mark.parametrize("field", ["psid", "page"])
@pytest.mark.parametrize("value", MESSENGER_CRAFTED)
def test_messenger_crafted_ids(guarded: Guarded, field: str, value: str) -> None:
    kwargs = {"psid": "5550001", "page": mr.PAGE, field: value}
    message = mr.text("add x", **kwargs)
    # Refused alone (a 200: the batch goes on), never stored, never reaching the bot.
    guarded.rejected(
        guarded.messenger.handle(mr.post(mr.single(message, page=kwargs["page"]))), 200
    )


@pytest.mark.parametrize("value", [5550001, None, ["5550001"], {"id": "5550001"}, 5.5])
def test_messenger_ids_of_the_wrong_type(guarded: Guarded, value: Any) -> None:
    message = mr.text("add x")
    message["sender"]["id"] = value
    guarded.rejected(guarded.messenger.handle(mr.post(mr.single(message))), 200)


def test_one_crafted_message_is_refused_alone(guarded: Guarded) -> None:
    """A crafted sender id is refused with its message; the rest of the batch runs, once
    (the batch is answered 200, so Meta does not redeliver it)."""
    good = mr.text("add x", psid="5550001")
    bad = mr.text("add y", psid="5550002#x")
    assert guarded.messenger.handle(mr.post(mr.single(good, bad)))["statusCode"] == 200
    assert [m.text for m in guarded.bot.turns] == ["add x"]
