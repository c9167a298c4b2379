"""The WhatsApp adapter's pure parts: webhook parsing (ids as sent, times at Meta's resolution,
one bad item never the whole webhook), rendering within the Cloud API's limits, the
``Template`` reply kind, and the 24-hour window in ``bot.testing``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import WINDOW_CLOSED, Bot, BotTypeError, Button, Message, Outcome, Reply, Template
from bot.testing import Conversation
from bot.timers import Timer
from handlers.settings import ConfigError
from handlers.whatsapp import config, parse, render
from tests import whatsapp_requests as wr

ids = st.from_regex(r"[A-Za-z0-9._-]{1,128}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(user=ids, seconds=st.integers(min_value=1, max_value=parse.MAX_TIMESTAMP - 1))
def test_the_user_is_the_id_as_sent_and_the_time_is_meta_seconds(user: str, seconds: int) -> None:
    """A phone number with leading zeros, a BSUID, any id of the alphabet: kept as a string,
    never read as a number (``"007"`` and ``"7"`` are two users)."""
    data = wr.single(wr.text("hi", user=user, timestamp=str(seconds)))
    (incoming,) = parse.parse_batch(data).messages
    assert incoming.key.user == incoming.message.user == user
    assert incoming.key.pk == f"whatsapp#{wr.NUMBER}#{user}"
    assert incoming.timestamp == seconds and incoming.message.time == float(seconds)


def test_digits_and_their_bsuid_are_two_users() -> None:
    one = parse.parse_batch(wr.single(wr.text("a", user="0016505551234"))).messages[0].key
    two = parse.parse_batch(wr.single(wr.text("a", user="16505551234"))).messages[0].key
    three = parse.parse_batch(wr.single(wr.text("a", user=wr.BSUID))).messages[0].key
    assert len({one.pk, two.pk, three.pk}) == 3


def test_statuses_run_no_turn_and_a_failed_one_keeps_its_codes_not_its_id() -> None:
    ours = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA"
    data = wr.webhook(wr.value(statuses=(wr.status(ours, "sent"),
                                         wr.status(ours, "failed", code=131047))))  # fmt: skip
    batch = parse.parse_batch(data)
    assert batch.messages == []
    assert [(s.status, s.codes) for s in batch.statuses] == [("sent", ()), ("failed", (131047,))]
    assert ours not in repr(batch.statuses)


def test_one_bad_item_is_refused_by_hash_and_the_rest_goes_on() -> None:
    good = wr.text("add milk")
    bad = {**wr.text("add eggs"), "timestamp": "12:00"}
    not_ours = {**wr.text("x"), "from": "+1 650 555"}  # not an id of the alphabet
    unread = {"from": wr.USER, "id": wr.wamid(), "timestamp": wr.now(), "type": "unsupported",
              "errors": [{"code": 131051}]}  # fmt: skip
    other_field = {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}
    data = wr.single(good, bad, not_ours, unread)
    data["entry"][0]["changes"].append(other_field)
    data["entry"].append({"id": wr.WABA})  # no changes
    rejected: list[tuple[str, str]] = []
    batch = parse.parse_batch(data, rejected=rejected)
    assert [m.message.text for m in batch.messages] == ["add milk"]
    assert [r for r, _ in rejected] == ["MalformedBatch", "InvalidKeyError", "MalformedEntry"]
    assert all(len(h) == 16 and "eggs" not in h for _, h in rejected)
    with pytest.raises(parse.MalformedBatch):
        parse.parse_batch({"object": "page", "entry": []})


def test_buttons_lists_and_templates_reach_the_bot_as_sent() -> None:
    def handles(action: str) -> bool:
        return action == "todo_done"

    ours = parse.encode_payload("todo_done", "3")
    tapped = [wr.button_reply(ours, "Done 3"), wr.list_reply(ours, "Done 3"),
              wr.button_reply("SOMETHING_ELSE", "Other")]  # fmt: skip
    stop = {"payload": "STOP", "text": "Stop promotions"}
    template_button = {"from": wr.USER, "id": wr.wamid(), "timestamp": wr.now(),
                       "type": "button", "button": stop}  # fmt: skip
    batch = parse.parse_batch(wr.single(*tapped, template_button), handles)
    got = [(m.message.kind, m.message.action, m.message.value, m.message.text)
           for m in batch.messages]  # fmt: skip
    assert got == [
        ("action", "todo_done", "3", ""),
        ("action", "todo_done", "3", ""),
        ("text", None, None, "Other"),
        ("text", None, None, "Stop promotions"),
    ]


def test_media_and_location() -> None:
    batch = parse.parse_batch(wr.single(wr.image("look"), wr.location()))
    photo, place = (m.message for m in batch.messages)
    assert photo.text == "look" and photo.attachments[0].kind == "image"
    assert photo.attachments[0].url == "1479537139650973"  # the media id: GET /<id> for a URL
    assert photo.attachments[0].mime == "image/jpeg"
    assert place.text == "Meta HQ"
    assert place.payload["latitude"] == 37.4847  # type: ignore[index]


def _buttons(n: int, label: str = "Done") -> list[Button]:
    return [Button(label, "todo_done", str(i), line=f"{i}. item") for i in range(1, n + 1)]


def test_three_short_buttons_are_reply_buttons_more_or_longer_a_list_of_ten() -> None:
    (three,) = render.render([Reply("pick", _buttons(3))])
    assert three["interactive"]["type"] == "button"
    assert [b["reply"]["title"] for b in three["interactive"]["action"]["buttons"]] == [
        "Done 1", "Done 2", "Done 3"]  # fmt: skip
    (four,) = render.render([Reply("pick", _buttons(4))])
    assert four["interactive"]["type"] == "list"
    (long,) = render.render([Reply("pick", _buttons(1, "A label longer than twenty"))])
    assert long["interactive"]["type"] == "list"
    assert long["interactive"]["action"]["sections"][0]["rows"][0]["title"] == (
        "A label longer than twen")  # fmt: skip
    (many,) = render.render([Reply("pick", _buttons(14))])
    assert len(many["interactive"]["action"]["sections"][0]["rows"]) == 10
    for message in (three, four, long, many):
        rows = message["interactive"]["action"].get("sections", [{"rows": []}])[0]["rows"]
        for row in rows:
            assert len(row["title"]) <= 24 and len(row["id"]) <= 200
            assert parse.decode_payload(row["id"])[0] == "todo_done"


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=12_000), buttons=st.integers(min_value=0, max_value=4))
def test_long_text_is_split_within_the_limits_and_nothing_is_lost(text: str, buttons: int) -> None:
    messages = render.render([Reply(text, _buttons(buttons))])
    bodies = []
    for message in messages:
        if message["type"] == "text":
            body = message["text"]["body"]
            assert 0 < len(body) <= render.TEXT_LIMIT
        else:
            body = message["interactive"]["body"]["text"]
            assert 0 < len(body) <= render.BODY_LIMIT
        bodies.append(body)
    assert (messages[-1]["type"] == "interactive") == (buttons > 0)
    # Split at line breaks (a longer line hard): nothing lost but blank lines, in order.
    joined = "\n".join(bodies)
    assert "".join(joined.split()) == "".join(text.split())


def test_a_template_renders_with_its_parameters_and_is_refused_elsewhere() -> None:
    (message,) = render.render([Template("order_update", "pt_BR", ["#42", "amanhã"])])
    assert message == {"type": "template", "template": {
        "name": "order_update", "language": {"code": "pt_BR"},
        "components": [{"type": "body", "parameters": [
            {"type": "text", "text": "#42"}, {"type": "text", "text": "amanhã"}]}]}}  # fmt: skip
    assert not render.free_form(message)
    assert json.loads(json.dumps(Template("x").to_dict()))["kind"] == "template"

    class Templating(Bot[dict]):
        def turn(self, state: dict, message: Message) -> Outcome[dict]:
            return Outcome(state, [Template("hello_world")])

    assert Conversation(Templating(), platform="whatsapp").say("hi") == [Template("hello_world")]
    for platform in ("slack", "messenger", "instagram"):
        with pytest.raises(BotTypeError, match="WhatsApp's alone"):
            Conversation(Templating(), platform=platform).say("hi")


class Reminder(Bot[dict]):
    """Reminds in ``n`` hours; told the window is closed, sends the approved template."""

    def turn(self, state: dict, message: Message) -> Outcome[dict]:
        if message.kind == "timer":
            return Outcome(state, [Reply("⏰ your reminder")])
        if message.kind == "effect" and message.action == WINDOW_CLOSED:
            unsent: Any = message.payload
            text = unsent["unsent"][0]["text"]
            return Outcome({"told": message.error}, [Template("reminder", "en_US", [text])])
        hours = int(message.text)
        return Outcome(state, ["OK"], [Timer("r", after=hours * 3600)])


def test_bot_testing_closes_the_window_after_24_hours_as_whatsapp_does() -> None:
    chat = Conversation(Reminder(), platform="whatsapp")
    chat.say("2")
    assert chat.texts(chat.advance(2 * 3600)) == ["⏰ your reminder"]  # within 24 h: text
    chat.say("30")
    assert chat.advance(30 * 3600) == [Template("reminder", "en_US", ["⏰ your reminder"])]
    assert str(chat.state["told"]).startswith("OutsideWindow:")
    slack = Conversation(Reminder(), platform="slack")
    slack.say("30")
    assert slack.texts(slack.advance(30 * 3600)) == ["⏰ your reminder"]  # no window there


def test_the_record_ttl_covers_metas_seven_days_and_cannot_be_set_below() -> None:
    assert config.RECORD_TTL > 7 * 86_400
    assert config.from_env({}).event_ttl == config.RECORD_TTL
    assert config.from_env({"WHATSAPP_EVENT_TTL": "900000"}).event_ttl == 900_000
    with pytest.raises(ConfigError, match="WHATSAPP_EVENT_TTL"):
        config.from_env({"WHATSAPP_EVENT_TTL": "86400"})
