"""The inspector's actions (``POST /_inspector/act``, :mod:`handlers.tools.inspector`): what
a user does on the page (type, run a slash command, press a button, pick an option, submit a
form, tap a quick reply or postback), signed as the platform would sign it and sent to the
server's own edge over HTTP, through ``make chat``'s client: the page never writes the store,
and the bot sees exactly what real traffic brings. What the user did is shown in the fake
platform's conversation (``fakes.say``) as the platform would show it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from handlers.tools import chat_wire as wire
from handlers.tools.chat_wire import FORM, JSON

if TYPE_CHECKING:
    from handlers.tools.chat_client import ChatClient
    from handlers.tools.local import LocalApp


def act(
    app: LocalApp, url: str, who: tuple[str, str, str, str], data: Mapping[str, Any]
) -> dict[str, Any]:
    """Sign and send one user action (``who``: platform, team, channel, user) to the server's
    own edge at ``url``; the answer's status and body (a slash command's or a form's ack)."""
    from handlers.tools.chat_client import ChatClient

    platform, team, channel, user = who
    client = ChatClient(
        url,
        platform=platform if platform != "slack" else "slack-dm",
        user=user,
        channel=channel,
        team=team,
        secrets=app.secrets(),
        timeout=0,
    )
    client.fakes = url + app.guard.fake_prefix()  # response URLs of this run
    thread = data.get("thread")
    client.thread = thread if isinstance(thread, str) and thread else None  # Slack's
    kind = str(data.get("kind") or "text")
    if platform == "messenger":
        return _messenger(app, client, kind, data)
    if platform == "whatsapp":
        return _whatsapp(app, client, kind, data)
    return _slack(app, client, kind, data)


def _slack(app: LocalApp, client: ChatClient, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "assistant":  # open an assistant thread, as Slack's assistant pane does
        viewing = data.get("viewing")
        client.start_assistant(viewing if isinstance(viewing, str) and viewing else None)
        return {"status": 200, "thread": client.thread}
    if kind == "text":
        text = str(data.get("text") or "")
        word, _, rest = text.partition(" ")
        if word.startswith("/"):
            return _slash(app, client, word, rest)
        if not client.channel.startswith("D"):
            return {"status": 0, "note": "in a channel the bot hears slash commands and "
                    "buttons (Slack sends it DMs and commands): type /command ..."}  # fmt: skip
        app.fakes.say(client.channel, client.user, text, thread=client.thread)
        body = json.dumps(client._dm(text)).encode()
        answer = client._post("/slack/events", body, client._slack_headers(body, JSON))
        return {"status": answer.status_code}
    if kind in ("press", "pick"):
        element: dict[str, Any] = {
            "type": "button" if kind == "press" else "static_select",
            "action_id": str(data["action"]),
            "block_id": str(data.get("block") or "b0"),
            "action_ts": f"{time.time():.6f}",
        }
        if kind == "press":
            element["value"] = str(data.get("value") or "")
        else:
            value = str(data.get("value") or "")
            element["selected_option"] = {
                "text": {"type": "plain_text", "text": str(data.get("label") or value)},
                "value": value,
            }
        app.fakes.say(client.channel, client.user, f"[{data.get('label') or kind}]")
        payload = client._interaction(
            "block_actions",
            actions=[element],
            container={"type": "message", "channel_id": client.channel,
                       "message_ts": f"{time.time():.6f}"},
            channel={"id": client.channel},
            response_url=client._response_url(),
        )  # fmt: skip
        return _interact(client, payload)
    if kind == "submit":
        view = dict(data["view"])
        values = {str(k): str(v) for k, v in dict(data.get("values") or {}).items()}
        submitted = wire.submitted_view(view, values)
        payload = client._interaction("view_submission", view=submitted)
        return _interact(client, payload)
    raise ValueError(f"unknown Slack action {kind!r}")


def _slash(app: LocalApp, client: ChatClient, command: str, text: str) -> dict[str, Any]:
    app.fakes.say(client.channel, client.user, f"{command} {text}".strip())
    fields = wire.slash_command(command, text, team=client.team, channel=client.channel,
                                user=client.user, response_url=client._response_url())  # fmt: skip
    body = urlencode(fields).encode()
    answer = client._post("/slack/events", body, client._slack_headers(body, FORM))
    ack = _body(answer)
    if isinstance(ack, dict) and (ack.get("text") or ack.get("blocks")):
        # What Slack shows for a command's ack: its message, to whoever ran it.
        app.fakes.slack_message(client.channel, client.user, ack)
    return {"status": answer.status_code, "ack": ack}


def _interact(client: ChatClient, payload: dict[str, Any]) -> dict[str, Any]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    answer = client._post("/slack/events", body, client._slack_headers(body, FORM))
    ack = _body(answer)
    errors = {}
    if isinstance(ack, dict) and ack.get("response_action") == "errors":
        errors = {str(k): str(v) for k, v in (ack.get("errors") or {}).items()}
    return {"status": answer.status_code, "ack": ack, "errors": errors}


def _messenger(
    app: LocalApp, client: ChatClient, kind: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    if kind == "text":
        text = str(data.get("text") or "")
        app.fakes.say(None, client.user, text, platform="messenger")
        event = client._messenger({"text": text})
    elif kind == "quick_reply":
        label = str(data.get("label") or "")
        app.fakes.say(None, client.user, label, platform="messenger")
        event = client._messenger(
            {"text": label, "quick_reply": {"payload": str(data.get("payload") or "")}}
        )
    elif kind == "postback":
        label = str(data.get("label") or "")
        app.fakes.say(None, client.user, f"[{label}]", platform="messenger")
        postback = {"mid": f"m_{uuid.uuid4().hex}", "title": label,
                    "payload": str(data.get("payload") or "")}  # fmt: skip
        event = client._messenger(None, postback=postback)
    else:
        raise ValueError(f"unknown Messenger action {kind!r}")
    body = json.dumps(event).encode()
    headers = wire.meta_headers(body, secret=client._secret("MESSENGER_APP_SECRET"))
    answer = client._post("/messenger/webhook", body, headers)
    return {"status": answer.status_code}


def _whatsapp(
    app: LocalApp, client: ChatClient, kind: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    if kind == "text":
        text = str(data.get("text") or "")
        app.fakes.say(None, client.user, text, platform="whatsapp")
        event = client._whatsapp("text", {"body": text})
    elif kind in ("button_reply", "list_reply"):
        label = str(data.get("label") or "")
        app.fakes.say(None, client.user, f"[{label}]", platform="whatsapp")
        tapped = {"id": str(data.get("payload") or ""), "title": label}
        event = client._whatsapp("interactive", {"type": kind, kind: tapped})
    else:
        raise ValueError(f"unknown WhatsApp action {kind!r}")
    answer = client._whatsapp_post_raw(event)
    return {"status": answer.status_code}


def _body(answer: Any) -> Any:
    text = answer.text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
