"""The public bot API without any edge: declarations, the outcome's checks, migrations, the
read-only message, every reply kind rendered on both platforms, and ``bot.testing``."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, ClassVar

import pytest

from bot import (
    Attachment,
    Bot,
    BotTypeError,
    Button,
    Card,
    Cards,
    Effect,
    EffectCall,
    Field,
    FormErrors,
    Media,
    Message,
    Modal,
    Outcome,
    Reply,
    effect,
)
from bot.replies import reply_from_dict
from bot.spec import BotSpec, StateVersionError
from bot.testing import Conversation
from handlers.messenger import parse as messenger_parse
from handlers.messenger import render as messenger_render
from handlers.slack import parse as slack_parse
from handlers.slack import render as slack_render


class Echo(Bot[dict[str, Any]]):
    commands: ClassVar[tuple[str, ...]] = ("/echo",)
    actions: ClassVar[tuple[str, ...]] = ("again",)
    action_prefix: ClassVar[str | None] = "echo:"

    def turn(self, state: dict[str, Any], message: Message) -> Any:
        return state, [message.text or "(nothing)"]


class Returns(Echo):
    """A bot whose turn returns whatever the test put in ``result``."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def turn(self, state: dict[str, Any], message: Message) -> Any:
        return self.result


def outcome_of(result: Any) -> Any:
    return BotSpec.of(Returns(result)).outcome({}, Message(text="hi"))


def test_declarations_route_commands_and_actions() -> None:
    spec = BotSpec.of(Echo())
    assert spec.handles_command("/echo") and not spec.handles_command("/todo")
    assert spec.handles_action("again") and spec.handles_action("echo:1")
    assert not spec.handles_action("echo") and not spec.handles_action("todo_done")


@pytest.mark.parametrize(
    ("attribute", "value", "says"),
    [
        ("commands", ("echo",), "must look like '/name'"),
        ("commands", "/echo", "tuple of non-empty strings"),
        ("actions", ("",), "tuple of non-empty strings"),
        ("action_prefix", "", "non-empty string"),
        ("schema_version", 0, "int >= 1"),
        ("schema_version", 3, "missing: [1, 2]"),
    ],
)
def test_bad_declarations_are_named(attribute: str, value: Any, says: str) -> None:
    bot = Echo()
    setattr(bot, attribute, value)
    with pytest.raises(BotTypeError) as error:
        BotSpec.of(bot)
    assert says in str(error.value)


def test_anything_with_a_turn_is_a_bot() -> None:
    class Plain:
        def turn(self, state: Any, message: Message) -> Any:
            return {"n": (state or {}).get("n", 0) + 1}, ["hi"]

    spec = BotSpec.of(Plain())
    assert not spec.commands and not spec.is_slow(Message())
    assert spec.initial_state() == {}
    assert spec.outcome({}, Message()).replies == (Reply("hi"),)
    with pytest.raises(BotTypeError, match="no turn"):
        BotSpec.of(object())


@pytest.mark.parametrize(
    ("result", "says"),
    [
        ("hello", "turn returned str 'hello'; expected Outcome(state, replies, effects)"),
        (None, "turn returned NoneType None"),
        (({}, ["a"], [], "extra"), "turn returned tuple"),
        (({}, 42), "returned replies int 42"),
        (({}, [{"kind": "carousel"}]), "reply of unknown kind dict {'kind': 'carousel'}"),
        (({}, [42]), "reply of unknown kind int 42"),
        (({}, [Reply("x", [Button("Go", "elsewhere")])]), "action 'elsewhere', which the bot"),
        (({}, [Modal("form", "T")]), "modal action 'form' is not declared"),
        (({}, [Media("https://x.test/a.gif", "gif")]), "Media kind 'gif'"),  # type: ignore[arg-type]
        (({}, [], ["send_mail"]), "effect str 'send_mail'"),
        (({}, [], [Effect("send_mail")]), "no method is marked @effect('send_mail')"),
    ],
)
def test_a_malformed_outcome_is_a_clear_type_error(result: Any, says: str) -> None:
    with pytest.raises(BotTypeError) as error:
        outcome_of(result)
    assert says in str(error.value)
    assert isinstance(error.value, TypeError)


def test_the_shapes_a_turn_may_return() -> None:
    assert outcome_of(({}, "one")).replies == (Reply("one"),)
    assert outcome_of(({}, Reply("one"))).replies == (Reply("one"),)
    assert outcome_of(({}, ["a", Reply("b")], None)).replies == (Reply("a"), Reply("b"))
    done = outcome_of(Outcome({"x": 1}, [Reply("ok", [Button("Link", url="https://x.test")])]))
    assert done.state == {"x": 1} and done.effects == ()


class Versioned(Echo):
    schema_version: ClassVar[int] = 3
    migrations: ClassVar[dict[int, Any]] = {
        1: lambda s: {"count": s.get("n", 0)},
        2: lambda s: {**s, "seen": []},
    }

    def initial_state(self) -> dict[str, Any]:
        return {"count": 0, "seen": []}


def test_migrations_run_in_order_on_load_and_a_newer_state_is_refused() -> None:
    spec = BotSpec.of(Versioned())
    assert spec.load_state(None) == {"count": 0, "seen": []}
    assert spec.load_state({"n": 4}) == {"count": 4, "seen": []}  # schema 1: stored as is
    assert spec.load_state({"__schema__": 2, "state": {"count": 2}}) == {"count": 2, "seen": []}
    stored = spec.dump_state({"count": 5, "seen": []})
    assert stored == {"__schema__": 3, "state": {"count": 5, "seen": []}}
    assert spec.load_state(stored) == {"count": 5, "seen": []}
    with pytest.raises(StateVersionError, match="schema 4, but Versioned knows schema 3"):
        spec.load_state({"__schema__": 4, "state": {}})
    assert BotSpec.of(Echo()).dump_state({"a": 1}) == {"a": 1}  # schema 1: no wrapper


def test_a_message_is_read_only_and_round_trips() -> None:
    message = Message(
        text="hi",
        kind="submission",
        platform="slack",
        action="form",
        form={"title": "x"},
        attachments=(Attachment("image", "https://x.test/a.png", "a.png", "image/png"),),
        raw={"event": {"files": [{"id": "F1"}]}},
        result={"id": [1, 2]},
    )
    with pytest.raises(TypeError):
        message.raw["event"]["files"] = []  # type: ignore[index]
    with pytest.raises(TypeError):
        message.form["title"] = "y"  # type: ignore[index]
    assert message.raw["event"]["files"][0]["id"] == "F1"
    again = Message.from_dict(json.loads(json.dumps(message.to_dict())))
    assert again == message and again.raw == message.raw


def test_every_reply_kind_round_trips_through_its_stored_form() -> None:
    replies = [
        Reply("a", [Button("B", "echo:b", "v", line="a")], visibility="in_channel"),
        Reply("blocks", blocks=[{"type": "divider"}], persistent=True),
        Cards([Card("T", "S", "https://x.test/i.png", [Button("Go", "again")])], text="pick"),
        Media("https://x.test/f.pdf", "file", "the file"),
        Modal("echo:form", "Title", [Field("name", "Name", options=("a", "b"))]),
        FormErrors({"name": "too short"}),
    ]
    for reply in replies:
        assert reply_from_dict(json.loads(json.dumps(reply.to_dict()))) == reply
    with pytest.raises(TypeError, match="unknown reply kind 'carousel'"):
        reply_from_dict({"kind": "carousel"})


def test_slack_renders_each_kind_and_groups_by_visibility() -> None:
    messages = slack_render.render(
        [
            Reply("one <@U1>"),
            Reply("two", [Button("Go", "again", "1"), Button("Docs", url="https://x.test")]),
            Reply("loud", visibility="in_channel"),
            Reply("fallback", blocks=[{"type": "divider"}]),
            Cards([Card("Card", "sub", "https://x.test/i.png", [Button("Pick", "again")])]),
            Media("https://x.test/i.png", caption="pic"),
            Media("https://x.test/f.pdf", "file"),
        ],
        visibility="ephemeral",
    )
    assert [m["visibility"] for m in messages] == ["ephemeral", "in_channel", "ephemeral"]
    first, loud, rest = messages
    assert "&lt;@U1&gt;" in first["text"]  # user text never becomes a mention
    actions = first["blocks"][-1]["elements"]
    assert actions[0]["action_id"] == "again" and actions[0]["value"] == "1"
    assert actions[1]["url"] == "https://x.test" and "value" not in actions[1]
    assert loud["blocks"][0]["text"]["text"] == "loud"
    kinds = [b["type"] for b in rest["blocks"]]
    assert kinds == ["divider", "section", "actions", "image", "section", "section"]
    assert rest["blocks"][1]["accessory"]["image_url"] == "https://x.test/i.png"
    assert "<https://x.test/f.pdf|f.pdf>" in rest["blocks"][-1]["text"]["text"]


def test_a_slack_modal_carries_its_conversation_and_comes_back_as_a_form() -> None:
    modal = Modal(
        "echo:form",
        "A very long title for a modal",
        [Field("title", "Title"), Field("urgency", "Urgency", options=("low", "high"))],
    )
    from sessions import ConversationKey

    key = ConversationKey.slack(team="T1", channel="C42", user="U1")
    view = slack_render.modal_view(modal, key=key, secret="s3cret")
    assert view["callback_id"] == "echo:form" and len(view["title"]["text"]) <= 24
    assert json.loads(view["private_metadata"])["channel"] == "C42"
    assert slack_parse.view_channel(view, team="T1", user="U1", secret="s3cret") == "C42"
    # Another user, another secret, a changed channel or no signature: no conversation.
    assert slack_parse.view_channel(view, team="T1", user="U2", secret="s3cret") == ""
    assert slack_parse.view_channel(view, team="T1", user="U1", secret="other") == ""
    forged = {**view, "private_metadata": view["private_metadata"].replace("C42", "C43")}
    assert slack_parse.view_channel(forged, team="T1", user="U1", secret="s3cret") == ""
    bare = {**view, "private_metadata": json.dumps({"channel": "C42"})}
    assert slack_parse.view_channel(bare, team="T1", user="U1", secret="s3cret") == ""
    view["state"] = {
        "values": {
            "title": {"value": {"type": "plain_text_input", "value": "Broken"}},
            "urgency": {"value": {"type": "static_select", "selected_option": {"value": "high"}}},
        }
    }
    assert slack_parse.form_values(view) == {"title": "Broken", "urgency": "high"}


def test_messenger_renders_each_kind_with_its_fallbacks() -> None:
    render = messenger_render.render
    [quick] = render([Reply("pick", [Button("A", "again", "1")])])
    assert quick["quick_replies"][0]["payload"] == json.dumps(
        {"action": "again", "value": "1"}, separators=(",", ":")
    )
    [template] = render([Reply("pick", [Button("A", "again"), Button("W", url="https://x.t")],
                               persistent=False)])  # fmt: skip
    payload = template["attachment"]["payload"]
    assert payload["template_type"] == "button"  # a link cannot be a quick reply
    assert [b["type"] for b in payload["buttons"]] == ["postback", "web_url"]
    many = [Button(str(i), "again") for i in range(5)]
    [fallback] = render([Reply("too many for a template", many, persistent=True)])
    assert len(fallback["quick_replies"]) == 5  # more than 3: quick replies instead
    [only_text] = render([Reply("shown", blocks=[{"type": "divider"}])])
    assert only_text == {"text": "shown"}
    intro, generic = render([Cards([Card("T" * 100, "S")] * 12, text="cards")])
    assert intro == {"text": "cards"}
    elements = generic["attachment"]["payload"]["elements"]
    assert len(elements) == 10 and len(elements[0]["title"]) == 80
    media, caption = render([Media("https://x.test/v.mp4", "video", "clip")])
    assert media["attachment"] == {
        "type": "video",
        "payload": {"url": "https://x.test/v.mp4", "is_reusable": True},
    }
    assert caption == {"text": "clip"}
    assert render([Modal("echo:f", "T", fallback="type it")]) == [{"text": "type it"}]
    assert render([FormErrors({"title": "needed"})]) == [{"text": "title: needed"}]


def test_messenger_payloads_become_actions_only_when_declared() -> None:
    spec = BotSpec.of(Echo())
    ours = messenger_parse.encode_payload("again", "7")
    item = {
        "sender": {"id": "5550001"},
        "timestamp": 1_700_000_000_000,
        "message": {"mid": "m1", "text": "Again", "quick_reply": {"payload": ours}},
    }
    [incoming] = messenger_parse.parse_batch(
        {"object": "page", "entry": [{"id": "100", "messaging": [item]}]}, spec.handles_action
    )
    message = incoming.message
    assert (message.kind, message.action, message.value) == ("action", "again", "7")
    assert (message.platform, message.user, message.conversation) == ("messenger", "5550001", "100")
    assert message.time == 1_700_000_000 and message.payload == ours
    item["postback"] = {"mid": "m2", "title": "Get started", "payload": "GET_STARTED"}
    del item["message"]
    [incoming] = messenger_parse.parse_batch(
        {"object": "page", "entry": [{"id": "100", "messaging": [item]}]}, spec.handles_action
    )
    assert incoming.message.kind == "text" and incoming.message.text == "Get started"
    assert incoming.message.payload == "GET_STARTED"
    item["message"] = {
        "mid": "m3",
        "attachments": [{"type": "image", "payload": {"url": "https://x.test/p.jpg"}}],
    }
    del item["postback"]
    [incoming] = messenger_parse.parse_batch(
        {"object": "page", "entry": [{"id": "100", "messaging": [item]}]}, spec.handles_action
    )
    assert incoming.message.attachments == (Attachment("image", "https://x.test/p.jpg"),)


class Ticketing(Bot[dict[str, Any]]):
    actions: ClassVar[tuple[str, ...]] = ("file",)

    def __init__(self) -> None:
        self.filed: list[str] = []

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        if message.kind == "effect":
            if message.error:
                return Outcome(state, [f"failed: {message.error}"])
            return Outcome({"ticket": message.result}, [f"filed {message.result}"])
        return Outcome(state, ["filing"], [Effect("file_ticket", {"title": message.text})])

    @effect("file_ticket", slow=True)
    def file_ticket(self, args: Any, call: EffectCall) -> str:
        if args["title"] == "boom":
            raise ConnectionError("ticketing system down")
        self.filed.append(call.key)
        return f"T-{len(self.filed)}"


def test_bot_testing_runs_effects_and_follow_ups_without_any_server() -> None:
    bot = Ticketing()
    chat = Conversation(bot)
    assert chat.texts(chat.say("printer")) == ["filing", "filed T-1"]
    assert chat.state == {"ticket": "T-1"}
    assert chat.texts(chat.say("boom")) == [
        "filing",
        "failed: ConnectionError: ticketing system down",
    ]
    assert BotSpec.of(bot).is_slow_effect("file_ticket")
    assert bot.filed[0].startswith("fx-")


def test_the_bot_api_imports_neither_slack_bolt_nor_boto3() -> None:
    code = (
        "import sys, bot, bot.testing, examples.todo, examples.quiz, examples.intake; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('slack_bolt', 'slack_sdk', 'boto3', 'botocore', 'handlers', 'sessions')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_slack_files_reach_the_bot_as_attachments() -> None:
    from sessions import ConversationKey

    event = {
        "type": "message",
        "subtype": "file_share",
        "channel_type": "im",
        "channel": "D0001",
        "user": "U0001",
        "text": "",
        "files": [
            {"id": "F1", "name": "shot.png", "mimetype": "image/png",
             "url_private": "https://files.slack.com/shot.png"},
            {"id": "F2", "name": "notes.pdf", "mimetype": "application/pdf",
             "url_private": "https://files.slack.com/notes.pdf"},
            {"id": "F3", "name": "no url"},
        ],
    }  # fmt: skip
    body = {"team_id": "T0001", "token": "legacy", "event": event, "event_time": 1_700_000_000}
    assert slack_parse.ignored_message(body, event) is None  # a file share with no text
    key = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
    message = slack_parse.event_message(body, key, 1_700_000_000.0)
    assert message.attachments == (
        Attachment("image", "https://files.slack.com/shot.png", "shot.png", "image/png"),
        Attachment("file", "https://files.slack.com/notes.pdf", "notes.pdf", "application/pdf"),
    )
    assert "token" not in message.raw and message.raw["event"]["files"][0]["id"] == "F1"
    edited = {**event, "subtype": "message_changed"}
    assert slack_parse.ignored_message(body, edited) == "message subtype message_changed"
    bare = {**event, "files": []}
    assert slack_parse.ignored_message(body, bare) == "message subtype file_share"
