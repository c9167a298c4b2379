"""The fake Slack and Graph APIs that ``make run`` (and ``make offline``'s fakes) serve under
``/_fake/``: what the bot sent is kept in an :class:`Outbox`, for the chat simulator and the
inspector; the fake OAuth authorize page and ``oauth.v2.access`` of the install flow."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from handlers.tools.guard import Guard, run_secret

#: Slack's streaming methods, which the fake plays.
STREAM_METHODS = frozenset({"chat.startStream", "chat.appendStream", "chat.stopStream"})


def _json(status: int, data: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps(data).encode()


class Outbox:
    """What the bot sent to the fake Slack and Graph routes, numbered, for the simulator."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, item: dict[str, Any]) -> None:
        with self.lock:
            item["seq"] = len(self.items) + 1
            self.items.append(item)

    def after(
        self,
        seq: int,
        *,
        user: str | None = None,
        channel: str | None = None,
        said: bool = False,
    ) -> list[dict[str, Any]]:
        """Items after ``seq``; with ``user`` (and ``channel``), only what that user would
        see: what was sent to them, and what was posted for everyone in their channel.
        ``said``: also what the users said (the inspector's echo of its own actions)."""
        with self.lock:
            items = self.items[seq:]
        if not said:
            items = [item for item in items if not item.get("said")]
        if user is None:
            return items
        return [
            item
            for item in items
            if (item.get("user") in (None, user) or item.get("said"))
            and (channel is None or item.get("channel") in (None, channel))
        ]


class FakeApis:
    """The fake Slack and Graph APIs (``/_fake/...``) the development config points the
    edges at: what the bot sent is kept in an :class:`Outbox` for the chat simulator. Served
    by ``make run`` itself, and alone (``--fakes-only``) beside ``make offline``."""

    def __init__(self) -> None:
        self.outbox = Outbox()
        #: Slack streams (``chat.startStream``...), by ts: channel, thread, text so far, and
        #: every call made to it.
        self.streams: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def route(
        self,
        guard: Guard,
        method: str,
        target: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        """``/_fake/...`` past the guard: ``GET /_fake/base`` (the prefix with this run's
        secret, for local clients: the guard has checked the Host, and no page on another
        origin can read the answer), the reads, and the actions under ``/_fake/<secret>/``."""
        if path == "/_fake/base" and method == "GET":
            return _json(200, {"prefix": guard.fake_prefix()})
        prefix = guard.fake_prefix()
        if path.startswith(prefix + "/"):
            inner = "/_fake" + path[len(prefix) :]
            query = urlsplit(target).query
            return self.handle(method, inner + (f"?{query}" if query else ""), inner, headers, body)
        return self.handle(method, target, path, headers, body)

    def handle(
        self, method: str, target: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path == "/_fake/outbox" and method == "GET":
            query = parse_qs(urlsplit(target).query)
            after = int((query.get("after") or ["0"])[0] or 0)
            user: str | None = (query.get("user") or [""])[0] or None
            channel: str | None = (query.get("channel") or [""])[0] or None
            messages = self.outbox.after(after, user=user, channel=channel)
            return _json(200, {"messages": messages})
        if path == "/_fake/slack/oauth/v2/authorize" and method == "GET":
            return authorize(target)
        if method != "POST":
            return 405, {}, b""
        ctype = headers.get("content-type", headers.get("Content-Type", ""))
        data: dict[str, Any]
        if "json" in ctype:
            data = json.loads(body or b"{}")
        else:
            data = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if path == "/_fake/slack/api/oauth.v2.access":
            return _json(200, oauth_access(data))
        if path == "/_fake/slack/api/views.open":
            view = data.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            # make chat's trigger ids name the user who pressed (``<time>.<user>.<hex>``).
            parts = str(data.get("trigger_id") or "").split(".")
            opener = parts[1] if len(parts) == 3 else None
            shown: dict[str, Any] = {"text": None, "buttons": [], "modal": view}
            self.outbox.add({"platform": "slack", "to": opener, "channel": None,
                             "user": opener, **shown})  # fmt: skip
            return _json(200, {"ok": True, "view": {"id": "V0LOCAL"}})
        if path == "/_fake/model/v1/chat/completions":  # the assistant example's model
            from handlers.tools import fake_model

            return fake_model.completions(body)
        method_name = path.removeprefix("/_fake/slack/api/")
        if method_name in STREAM_METHODS:
            return _json(200, self.stream_call(method_name, data))
        if path.startswith("/_fake/slack/api/assistant.threads."):
            self.outbox.add(assistant_item(path.rsplit("/", 1)[-1], data))
            return _json(200, {"ok": True})
        if path.startswith("/_fake/slack/api/"):
            # chat.postEphemeral names its user; chat.postMessage is for the whole channel.
            posted_to = data.get("channel")
            self._record(
                "slack", posted_to, data.get("user"), data.get("text"), slack_buttons(data),
                raw=_slack_raw(data), thread=data.get("thread_ts"),
            )  # fmt: skip
            return _json(200, {"ok": True, "channel": posted_to, "ts": "1.0"})
        if path.startswith("/_fake/slack/response/"):
            # make chat's response URLs name the channel and the user: ``<channel>/<user>/<id>``.
            parts = path[len("/_fake/slack/response/") :].split("/")
            where, who = (parts[0], parts[1]) if len(parts) == 3 else (None, None)
            if data.get("response_type") == "in_channel" or data.get("replace_original"):
                who = None  # everyone in the channel sees it
            self._record(
                "slack", where, who, data.get("text"), slack_buttons(data), raw=_slack_raw(data)
            )
            return 200, {"content-type": "text/plain"}, b"ok"
        if path.startswith("/_fake/whatsapp/"):
            to = data.get("to")
            text, buttons = whatsapp_shown(data)
            self._record("whatsapp", None, to, text, buttons, raw=dict(data))
            return _json(200, {"messaging_product": "whatsapp",
                               "contacts": [{"input": to, "wa_id": to}],
                               "messages": [{"id": "wamid.local"}]})  # fmt: skip
        if path.startswith("/_fake/graph/"):
            message = data.get("message") or {}
            psid = (data.get("recipient") or {}).get("id")
            text, buttons = messenger_shown(message)
            self._record("messenger", None, psid, text, buttons, raw=dict(message))
            return _json(200, {"recipient_id": psid, "message_id": "m_local"})
        return 404, {}, b""

    def stream_call(self, method: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """``chat.startStream`` / ``appendStream`` / ``stopStream``, as Slack plays them: a
        ts per stream, text appended, nothing after the stop. Each call is kept, and each
        adds the stream's text so far to the outbox (the inspector redraws it growing)."""
        text = str(data.get("markdown_text") or "")
        with self._lock:
            if method == "chat.startStream":
                if not data.get("channel") or not data.get("thread_ts"):
                    return {"ok": False, "error": "invalid_arguments"}
                ts = f"{1700000000 + len(self.streams)}.{len(self.streams) + 1:06d}"
                stream = self.streams[ts] = {
                    "channel": data.get("channel"), "thread_ts": data.get("thread_ts"),
                    "text": "", "calls": [], "stopped": False,
                }  # fmt: skip
            else:
                ts = str(data.get("ts") or "")
                found = self.streams.get(ts)
                if found is None:
                    return {"ok": False, "error": "message_not_found"}
                if found["stopped"]:
                    return {"ok": False, "error": "message_not_in_streaming_state"}
                stream = found
            stream["calls"].append({"method": method, **dict(data)})
            stream["text"] += text
            stream["stopped"] = method == "chat.stopStream"
            shown = {"text": stream["text"], "stream": ts, "streaming": not stream["stopped"]}
            channel = stream["channel"]
        self._record("slack", channel, None, shown["text"], [],
                     raw={**shown, "blocks": [], "thread_ts": stream["thread_ts"]})  # fmt: skip
        return {"ok": True, "channel": channel, "ts": ts}

    def _record(
        self,
        platform: str,
        channel: Any,
        user: Any,
        text: Any,
        buttons: list[Any],
        *,
        raw: dict[str, Any] | None = None,
        thread: Any = None,
    ) -> None:
        """Keep one message with its recipient: ``user`` (``None``: everyone in ``channel``),
        and ``raw``, what the platform got (blocks, quick replies, templates); ``thread``: the
        Slack thread it was posted in (its root's ts)."""
        item = {"platform": platform, "to": user or channel, "channel": channel, "user": user,
                "text": text, "buttons": buttons, "raw": raw or {}}  # fmt: skip
        if isinstance(thread, str) and thread:
            item["thread"] = thread
        self.outbox.add(item)

    def say(
        self,
        channel: Any,
        user: str,
        text: str,
        *,
        platform: str = "slack",
        thread: str | None = None,
    ) -> None:
        """What a user did in the inspector, shown in the channel's history (not a reply:
        ``make chat`` never reads it back); ``thread``: in that Slack thread."""
        item = {"platform": platform, "to": channel, "channel": channel, "user": user,
                "said": True, "text": text, "buttons": []}  # fmt: skip
        if thread:
            item["thread"] = thread
        self.outbox.add(item)

    def slack_message(self, channel: str, user: str, data: dict[str, Any]) -> None:
        """A slash command's ack message, as Slack shows it to whoever ran the command."""
        who = None if data.get("response_type") == "in_channel" else user
        self._record("slack", channel, who, data.get("text"), slack_buttons(data),
                     raw=_slack_raw(data))  # fmt: skip


def _declared(reference: str) -> dict[str, Any] | None:
    """The name and slash commands of the bot ``reference`` names (``BOT``; empty: the
    default), as ``/healthz`` says them; ``None`` when it does not load."""
    from bot.spec import DEFAULT_BOT
    from handlers.entry import load_bot, spec_of
    from handlers.settings import ConfigError

    try:
        spec = spec_of(load_bot(reference or DEFAULT_BOT))
    except ConfigError:
        return None
    return {"name": spec.name, "commands": sorted(spec.commands)}


class FakesOnly:
    """``--fakes-only``: the fake APIs and ``/healthz``, no edges (``make offline`` runs the
    deploy's functions under the emulator and points them here)."""

    def __init__(self, *, port: int, secret: str | None = None) -> None:
        self.fakes = FakeApis()
        self.guard = Guard(port, secret or run_secret())
        #: The bot the emulator's functions run (``BOT``), for ``make chat``: its commands.
        self.bot = _declared(os.environ.get("BOT") or "")

    def dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(target).path
        refusal = self.guard.refused(method, path, headers)
        if refusal is not None:
            return refusal.answer()
        if path == "/healthz" and method == "GET":
            return _json(200, {"ok": True, "fakes": True, "bot": self.bot})
        if path.startswith("/_fake/"):
            return self.fakes.route(self.guard, method, target, path, headers, body)
        return 404, {"content-type": "text/plain"}, b"not found (the fake APIs only)"

    def close(self) -> None:
        return None


def _slack_raw(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a Slack message carried, for the inspector to draw: text, blocks (a JSON string
    when form-encoded), how it is shown."""
    blocks = data.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            blocks = None
    return {
        "text": data.get("text"),
        "blocks": blocks or [],
        "response_type": data.get("response_type"),
        "replace_original": bool(data.get("replace_original")),
        "ephemeral": bool(data.get("user")) or data.get("response_type") == "ephemeral",
    }


def authorize(target: str) -> tuple[int, dict[str, str], bytes]:
    """Slack's authorize page, as the local fake plays it: the installer approves at once and
    is sent back to ``redirect_uri`` with a code for workspace ``team`` (a query parameter of
    this page; default ``T0LOCAL``, the workspace ``make chat`` talks as)."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
    redirect, state = query.get("redirect_uri"), query.get("state")
    if not redirect or not state:
        return 400, {"content-type": "text/plain"}, b"missing redirect_uri or state"
    team = query.get("team") or "T0LOCAL"
    back = f"{redirect}?{urlencode({'code': f'code-{team}', 'state': state})}"
    return 302, {"location": back}, b""


def oauth_access(form: Mapping[str, Any]) -> dict[str, Any]:
    """Slack's ``oauth.v2.access``, as the local fake plays it: a token per workspace."""
    code = str(form.get("code") or "")
    if not code.startswith("code-"):
        return {"ok": False, "error": "invalid_code"}
    team = code.removeprefix("code-")
    return {
        "ok": True,
        "app_id": "A0LOCAL",
        "access_token": f"xoxb-local-{team}",
        "token_type": "bot",
        "scope": "commands,chat:write",
        "bot_user_id": "U0LOCALBOT",
        "team": {"id": team, "name": f"Local {team}"},
        "enterprise": None,
        "is_enterprise_install": False,
        "authed_user": {"id": "U0LOCAL"},
    }


#: What each assistant method of the fake Slack records (``assistant.threads.*``).
ASSISTANT_METHODS = {
    "assistant.threads.setStatus": "status",
    "assistant.threads.setSuggestedPrompts": "prompts",
    "assistant.threads.setTitle": "title",
}


def assistant_item(method: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """An assistant call (``assistant.threads.setStatus`` / ``setSuggestedPrompts`` /
    ``setTitle``) as the outbox keeps it: for everyone in the thread's channel, with its
    ``thread``, and ``assistant`` saying what it set (``kind``: status, prompts or title). A
    prompt is kept as a button whose ``prompt`` is the message it sends."""
    kind = ASSISTANT_METHODS.get(method, method)
    channel = data.get("channel_id")
    prompts = data.get("prompts")
    if isinstance(prompts, str):  # form-encoded
        try:
            prompts = json.loads(prompts)
        except ValueError:
            prompts = []
    buttons = [
        {
            "label": str(p.get("title") or p.get("message") or ""),
            "prompt": str(p.get("message") or ""),
        }
        for p in (prompts if isinstance(prompts, list) else [])
        if isinstance(p, Mapping)
    ]
    text = {"status": data.get("status"), "title": data.get("title")}.get(kind)
    if kind == "prompts":
        text = data.get("title") or "Suggested prompts"
    return {
        "platform": "slack",
        "to": channel,
        "channel": channel,
        "user": None,
        "text": text,
        "buttons": buttons,
        "thread": data.get("thread_ts"),
        "assistant": {"kind": kind, "loading": list(data.get("loading_messages") or [])},
        "raw": dict(data),
    }


def slack_buttons(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The buttons of a Slack message, as the chat simulator presses them: label, action id,
    value, block id, and the line they sit beside (``about``) or the link they open."""
    blocks = data.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    found: list[dict[str, Any]] = []
    for block in blocks or []:
        elements = [block.get("accessory") or {}, *(block.get("elements") or [])]
        about = (block.get("text") or {}).get("text") if block.get("accessory") else None
        for element in elements:
            if element.get("type") == "button":
                found.append({
                    "label": element["text"]["text"],
                    "action": element.get("action_id"),
                    "value": element.get("value", ""),
                    "block": block.get("block_id", ""),
                    "url": element.get("url"),
                    "about": about,
                })  # fmt: skip
    return found


def whatsapp_shown(message: Mapping[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """What a user sees of a Cloud API message: its text (a template's name and parameters,
    a media message's link and caption) and its reply buttons or list rows (label and id)."""
    kind = message.get("type")
    body = message.get(kind) if isinstance(kind, str) else None
    body = body if isinstance(body, Mapping) else {}
    if kind == "text":
        return str(body.get("body") or ""), []
    if kind == "interactive":
        action = body.get("action") or {}
        if body.get("type") == "list":
            rows = [r for s in action.get("sections") or () for r in s.get("rows") or ()]
            found = [{"label": r.get("title"), "payload": r.get("id"), "type": "list_reply"}
                     for r in rows]  # fmt: skip
        else:
            replies = [b.get("reply") or {} for b in action.get("buttons") or ()]
            found = [{"label": r.get("title"), "payload": r.get("id"), "type": "button_reply"}
                     for r in replies]  # fmt: skip
        return str((body.get("body") or {}).get("text") or ""), found
    if kind == "template":
        params = [p.get("text") for c in body.get("components") or ()
                  for p in c.get("parameters") or ()]  # fmt: skip
        return f"[template {body.get('name')}] {' · '.join(map(str, params))}".strip(), []
    caption = body.get("caption")
    return f"[{kind}] {body.get('link') or ''}" + (f"\n{caption}" if caption else ""), []


def messenger_shown(message: Mapping[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """A Send API message as text and pressable buttons (quick replies, template buttons)."""
    buttons: list[dict[str, Any]] = [
        {"label": q.get("title"), "payload": q.get("payload"), "type": "quick_reply"}
        for q in message.get("quick_replies") or []
    ]
    text = message.get("text")
    attachment = message.get("attachment") or {}
    payload = attachment.get("payload") or {}
    if attachment.get("type") == "template":
        parts = [payload.get("text")] if payload.get("text") else []
        elements = payload.get("elements") or [payload]
        for element in elements:
            if element.get("title"):
                parts.append(" - ".join(filter(None, [element["title"], element.get("subtitle")])))
            for b in element.get("buttons") or []:
                buttons.append({"label": b.get("title"), "payload": b.get("payload"),
                                "url": b.get("url"), "type": "postback"})  # fmt: skip
        text = "\n".join(str(p) for p in parts)
    elif attachment:
        text = f"[{attachment.get('type')}: {payload.get('url')}]"
    return text, buttons
