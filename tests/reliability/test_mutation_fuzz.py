"""Mutation fuzzing of both edges with validly signed requests, as the platforms (or anyone
holding a leaked secret) could send them: a valid request of every kind (Slack DM, channel
message, slash command, block action, modal submission; Messenger text, postback, quick reply,
attachment batch), one field of it replaced by a wrong type, text from every Unicode category
(lone surrogates, combining marks, non-ASCII digits, bidi marks, NUL), a huge or empty value or
deep nesting, or a key duplicated in the raw JSON; then signed and delivered twice.

WhatsApp: text (a phone number's and a BSUID user's), button and list replies, media with a
location, a batch of two senders with a failed status.

Invariants: no exception escapes; no 5xx while the store is healthy; nothing is stored for a
4xx; the same request twice gets the same status.
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import Field, Modal
from handlers.slack import render as slack_render
from sessions import ConversationKey, Sessions
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests import whatsapp_requests as wr
from tests.reliability.test_fuzz import FUZZ, World

#: Examples per edge: ``make test`` runs 400, ``make test-long`` 2,000.
EXAMPLES = int(os.environ.get("MUTATION_EXAMPLES", "400"))

#: Text from the categories that break naive code.
hostile_text = st.one_of(
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=4),  # lone surrogates
    st.text(st.characters(categories=["Mn", "Me"]), min_size=1, max_size=8),  # combining
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=8),  # digits, ²
    st.sampled_from(["\u200f", "\u202e", "\u2066", "\ufeff", "\x00", "a\x00b", "\r\n", "#"]),
    st.text(max_size=30),
    st.just(""),
    st.integers(min_value=1, max_value=200).map(lambda n: "x" * (n * 100)),
)
hostile_value = st.one_of(
    hostile_text,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # nan and inf too
    st.integers(min_value=1, max_value=60).map(lambda d: json.loads("[" * d + "]" * d)),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value that a mutation may replace."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _dumps(value: Any, duplicate: tuple[str, Any] | None) -> bytes:
    text = json.dumps(value)  # ensure_ascii: surrogates travel as \\udXXX escapes
    if duplicate is not None and text.startswith("{") and text != "{}":
        name, extra = duplicate
        text = text[:-1] + f", {json.dumps(name)}: {json.dumps(extra)}}}"
    return text.encode()


# -- valid requests of every kind ---------------------------------------------------------------

SECRET = sr.SECRET


def slack_kinds() -> dict[str, Callable[[], tuple[str, dict[str, Any]]]]:
    """name -> () -> (encoding, payload): "json" for the Events API, "form" for commands,
    "payload" for interactivity (the JSON inside the form's ``payload`` field)."""
    key = ConversationKey.slack(team="T0001", channel="C0001", user="U0001")
    modal = Modal("todo_done", "Form", [Field("title", "Title")])
    view = slack_render.modal_view(modal, key=key, secret=SECRET)
    submission = sr.view_submission(view, {"title": "printer"})
    return {
        "dm": lambda: ("json", sr.dm_body("add milk")),
        "channel": lambda: (
            "json",
            sr.dm_body("add milk", channel="C0001", channel_type="channel"),
        ),
        "command": lambda: (
            "form",
            {
                "command": "/todo",
                "text": "add milk",
                "team_id": "T0001",
                "channel_id": "C0001",
                "user_id": "U0001",
                "trigger_id": f"{random.randrange(10**12)}.abc",
                "response_url": "http://127.0.0.1:9/response",
            },
        ),
        "action": lambda: ("payload", _form_payload(sr.block_action("done:1"))),
        "submission": lambda: ("payload", _form_payload(submission)),
    }


def _form_payload(event: dict[str, Any]) -> dict[str, Any]:
    body = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"]
    if isinstance(body, str):
        body = body.encode()
    payload: dict[str, Any] = json.loads(parse_qs(body.decode())["payload"][0])
    return payload


MESSENGER_KINDS: dict[str, Callable[[], dict[str, Any]]] = {
    "text": lambda: mr.single(mr.text("add milk")),
    "postback": lambda: mr.single(mr.postback("todo_done|1")),
    "quick-reply": lambda: mr.single(mr.text("Done", quick_reply="todo_done|1")),
    "attachments": lambda: mr.single(
        {
            **mr.text("see"),
            "message": {
                "mid": "m_att",
                "attachments": [{"type": "image", "payload": {"url": "https://x.test/a.png"}}],
            },
        },
        mr.text("add eggs", psid="5550002"),
    ),
}


def _slack_event(encoding: str, payload: Any, duplicate: tuple[str, Any] | None) -> dict[str, Any]:
    if encoding == "json":
        raw = _dumps(payload, duplicate)
        headers = {"content-type": "application/json", **sr.sign(raw)}
        return sr.http_v2(raw, headers, base64_body=False)
    if encoding == "form":
        fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()}
        # A lone surrogate leaves as its UTF-8-ish bytes, percent-encoded.
        raw = urlencode(fields, encoding="utf-8", errors="surrogatepass").encode()
    else:
        raw = urlencode({"payload": _dumps(payload, duplicate).decode()}).encode()
    headers = {"content-type": "application/x-www-form-urlencoded", **sr.sign(raw)}
    return sr.http_v2(raw, headers)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("mutation"))
    yield w
    w.close()


def _twice(world: World, deliver: Callable[[], dict[str, Any]]) -> None:
    world.reset()
    first = deliver()
    assert first["statusCode"] < 500, first
    if 400 <= first["statusCode"] < 500:
        assert world.store.writes == [] and world.bot.turns == []
    second = deliver()
    assert second["statusCode"] == first["statusCode"], (first, second)


@settings(FUZZ, max_examples=EXAMPLES)
@given(data=st.data(), kind=st.sampled_from(sorted(slack_kinds())))
def test_slack_mutated_and_signed(world: World, data: st.DataObject, kind: str) -> None:
    encoding, payload = slack_kinds()[kind]()
    paths = list(_paths(payload))
    path = data.draw(st.sampled_from(paths), label="path")
    mutated = _replace(payload, path, data.draw(hostile_value, label="value"))
    duplicate = data.draw(st.none() | st.tuples(st.sampled_from(list(payload)), hostile_value))
    event = _slack_event(encoding, mutated, duplicate)
    _twice(world, lambda: world.slack.handle(event))


@settings(FUZZ, max_examples=EXAMPLES)
@given(data=st.data(), kind=st.sampled_from(sorted(MESSENGER_KINDS)))
def test_messenger_mutated_and_signed(world: World, data: st.DataObject, kind: str) -> None:
    payload = MESSENGER_KINDS[kind]()
    path = data.draw(st.sampled_from(list(_paths(payload))), label="path")
    mutated = _replace(payload, path, data.draw(hostile_value, label="value"))
    duplicate = data.draw(st.none() | st.tuples(st.sampled_from(list(payload)), hostile_value))
    raw = _dumps(mutated, duplicate)
    _twice(world, lambda: world.messenger.handle(mr.post(raw)))


def test_the_mutations_reach_the_bot_sometimes(world: World) -> None:
    """The fuzz is not all refusals: an unmutated request of each kind reaches the bot (a
    channel message is acknowledged and left alone: only DMs are the bot's)."""
    for kind, build in slack_kinds().items():
        world.reset()
        encoding, payload = build()
        assert world.slack.handle(_slack_event(encoding, payload, None))["statusCode"] == 200
        assert bool(world.bot.turns) is (kind != "channel"), kind
    for kind, make in MESSENGER_KINDS.items():
        world.reset()
        assert world.messenger.handle(mr.post(_dumps(make(), None)))["statusCode"] == 200
        assert world.bot.turns, kind


# -- WhatsApp ----------------------------------------------------------------------------------

WHATSAPP_KINDS: dict[str, Callable[[], dict[str, Any]]] = {
    "text": lambda: wr.single(wr.text("add milk")),
    "bsuid": lambda: wr.single(wr.text("add milk", user=wr.BSUID)),
    "button-reply": lambda: wr.single(
        wr.button_reply('{"action":"todo_done","value":"1"}', "Done 1")
    ),
    "list-reply": lambda: wr.single(wr.list_reply('{"action":"todo_done","value":"1"}', "Done 1")),
    "media-and-location": lambda: wr.single(wr.image("add a photo"), wr.location()),
    "batch-and-status": lambda: wr.webhook(
        wr.value(wr.text("add tea"), wr.text("add jam", user="16505550002")),
        wr.value(statuses=(wr.status(wr.wamid(), "failed", code=131047),)),
    ),
}


@pytest.fixture(scope="module")
def whatsapp_edge(world: World) -> Any:
    import handlers.whatsapp
    from handlers.whatsapp.config import WhatsAppSettings
    from tests.reliability.conftest import settings_for

    config = WhatsAppSettings(app_secret=wr.APP_SECRET, verify_token=wr.VERIFY_TOKEN,
                              token=wr.TOKEN, api_url=world.fake.graph_url)  # fmt: skip
    return handlers.whatsapp.build(
        settings_for(world.fake), sessions=Sessions(world.store), bot=world.bot,
        whatsapp=config, workers=1,
    )  # fmt: skip


@settings(FUZZ, max_examples=EXAMPLES)
@given(data=st.data(), kind=st.sampled_from(sorted(WHATSAPP_KINDS)))
def test_whatsapp_mutated_and_signed(
    world: World, whatsapp_edge: Any, data: st.DataObject, kind: str
) -> None:
    payload = WHATSAPP_KINDS[kind]()
    path = data.draw(st.sampled_from(list(_paths(payload))), label="path")
    mutated = _replace(payload, path, data.draw(hostile_value, label="value"))
    duplicate = data.draw(st.none() | st.tuples(st.sampled_from(list(payload)), hostile_value))
    raw = _dumps(mutated, duplicate)
    _twice(world, lambda: whatsapp_edge.handle(wr.post(raw)))
