"""An assistant's replies on WhatsApp: prompts are reply buttons (a list past 3) whose tap
comes back as the prompt's message typed; a status and a title send nothing."""

from __future__ import annotations

from bot import Prompts, Reply, Status, Title
from handlers.whatsapp import parse, render


def test_prompts_are_reply_buttons_whose_tap_is_the_prompts_message() -> None:
    messages = render.render(
        [Status("is thinking"), Title("Chat"), Prompts([("Sum", "Summarise this thread")])]
    )
    assert len(messages) == 1
    interactive = messages[0]["interactive"]
    assert interactive["type"] == "button"
    assert interactive["body"]["text"] == render.SUGGESTIONS
    button = interactive["action"]["buttons"][0]["reply"]
    assert button["title"] == "Sum"
    tapped = parse._tapped(button["id"], button["title"], lambda _action: True)
    assert tapped == {"text": "Summarise this thread", "payload": button["id"]}


def test_many_prompts_are_a_list_under_their_title_and_a_plain_button_is_still_an_action() -> None:
    prompts = Prompts([(f"Idea {i}", f"idea {i}") for i in range(12)], title="Ideas")
    (message,) = render.render([prompts])
    interactive = message["interactive"]
    assert interactive["type"] == "list" and interactive["body"]["text"] == "Ideas"
    rows = interactive["action"]["sections"][0]["rows"]
    assert len(rows) == render.MAX_ROWS
    assert parse._tapped(rows[3]["id"], rows[3]["title"], lambda _a: True)["text"] == "idea 3"
    (plain,) = render.render([Reply("vote", [])]) or [None]
    assert plain == render.text_message("vote")
    decoded = parse._tapped(parse.encode_payload("yes", "1"), "Yes", lambda a: a == "yes")
    assert decoded["kind"] == "action" and decoded["action"] == "yes"
