"""``make chat``'s client (:mod:`handlers.tools.chat`): one user of one platform talking to
the local server. It sends each line, button press and form as the platform would (signed:
:mod:`handlers.tools.chat_wire`), reads the bot's replies back from the server's fake
Slack/Graph routes (or from a slash command's HTTP answer), waits out a streamed answer, and
asks the server's delivery journal why, when no reply comes. The inspector's actions go
through it too.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import requests

from handlers.tools import chat_wire as wire
from handlers.tools.chat_render import render
from handlers.tools.fakes import slack_buttons
from handlers.tools.local import CONFIG, fakes_base, read_config
from handlers.tools.silence import ChatError, entry_of, unreachable, why_silent

PLATFORMS = ("slack-dm", "slack-command", "messenger", "whatsapp")
#: make chat's WhatsApp business number (its phone number id) and user (a phone number).
WHATSAPP_NUMBER, WHATSAPP_USER = "100000000000002", "15550000001"


class ChatClient:
    """Sends signed requests to the local server and collects the bot's replies."""

    def __init__(
        self,
        url: str,
        *,
        platform: str = "slack-dm",
        user: str | None = None,
        channel: str | None = None,
        team: str = "T0LOCAL",
        secrets: dict[str, str] | None = None,
        timeout: float = 10.0,
        outbox: str | None = None,
    ) -> None:
        if platform not in PLATFORMS:
            raise ChatError(f"unknown platform {platform!r}: choose one of {', '.join(PLATFORMS)}")
        self.url = url.rstrip("/")
        #: Where the fake APIs keep the replies: the server itself (``make run``), or the fakes
        #: served beside ``make offline``.
        self.outbox_url = (outbox or url).rstrip("/")
        self.platform = platform
        messenger = platform == "messenger"
        self.user = user or ("2000000001" if messenger else "U0LOCAL")
        default_channel = (
            "1000000001" if messenger else ("D0LOCAL" if platform == "slack-dm" else "C0LOCAL")
        )
        if platform == "whatsapp":  # the channel is the business number's id
            self.user, default_channel = user or WHATSAPP_USER, WHATSAPP_NUMBER
        self.channel = channel or default_channel
        self.team = team
        env = {**read_config(CONFIG), **{k: v for k, v in os.environ.items() if v}}
        self.secrets = secrets or env
        self.timeout = timeout
        self.http = requests.Session()
        self.cursor = len(self._outbox(0))
        #: The buttons of the latest replies that had any, for ``press``: replies without
        #: buttons (or none at all) leave them, as the message that has them stays on screen.
        self.buttons: list[dict[str, Any]] = []
        self.modal: dict[str, Any] | None = None  #: a form the bot opened, for ``submit``
        self._commands: list[str] | None = None
        self._sent_at = 0.0  #: when the last signed request went (its journal entry is later)
        #: The fake APIs' base with the server's per-run secret (``GET /_fake/base``).
        self.fakes: str | None = None
        #: The Slack thread this user is in (its root's ts), ``None``: the top level.
        self.thread: str | None = None

    # -- transport ----------------------------------------------------------------------------

    def _tool(self, base: str, path: str, params: dict[str, str]) -> requests.Response:
        """A GET of one of the local server's own routes (``/_fake/...``, ``/_inspector/...``,
        ``/healthz``): the one place such a request is made."""
        try:
            return self.http.get(f"{base}{path}", params=params, timeout=5)
        except requests.ConnectionError as exc:
            raise unreachable(base, exc) from exc

    def _outbox(self, after: int) -> list[dict[str, Any]]:
        params = {"after": str(after), "user": self.user, "channel": self.channel}
        answer = self._tool(self.outbox_url, "/_fake/outbox", params)
        if answer.status_code != 200:
            return []
        messages: list[dict[str, Any]] = answer.json()["messages"]
        return messages

    def _response_url(self) -> str:
        """A response URL of the local fake that names who it answers (so that the outbox
        keeps each reply with its recipient)."""
        if self.fakes is None:  # under the server's per-run secret, asked once
            self.fakes = fakes_base(self.url)
        return f"{self.fakes}/slack/response/{self.channel}/{self.user}/{uuid.uuid4().hex[:8]}"

    def _trigger_id(self) -> str:
        return wire.trigger_id(self.user)

    def _secret(self, name: str) -> str:
        value = self.secrets.get(name)
        if not value:
            raise ChatError(f"{name} is not set and {CONFIG} does not exist: run `make run` first")
        return value

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
        self._sent_at = time.time()
        try:
            return self.http.post(f"{self.url}{path}", data=body, headers=headers, timeout=30)
        except requests.ConnectionError as exc:
            raise unreachable(self.url, exc) from exc

    def _slack_headers(self, body: bytes, content_type: str) -> dict[str, str]:
        return wire.slack_headers(body, content_type, secret=self._secret("SLACK_SIGNING_SECRET"))

    # -- one line -------------------------------------------------------------------------------

    @property
    def commands(self) -> list[str]:
        """The running bot's slash commands (the server's ``/healthz`` says them)."""
        if self._commands is None:
            self._commands = []
            for base in dict.fromkeys((self.url, self.outbox_url)):
                try:
                    health = self.http.get(f"{base}/healthz", timeout=5).json()
                except (requests.RequestException, ValueError):
                    continue
                if isinstance(health, dict) and isinstance(health.get("bot"), dict):
                    self._commands = list(health["bot"].get("commands") or [])
                    break
            else:
                # No server says (make offline's emulator serves the deploy's routes only):
                # the bot BOT names, as the functions load it.
                self._commands = bot_commands(os.environ.get("BOT") or "")
        return self._commands

    def send(self, text: str) -> list[str]:
        """Send one line; return the bot's replies as printable text.

        On Slack a line that starts with one of the bot's slash commands is sent as that
        command (``--platform slack-command`` sends every line as the bot's first command).
        """
        if self.platform.startswith("slack"):
            word, _, rest = text.partition(" ")
            if word in self.commands:
                return self._slash(word, rest)
            if self.platform == "slack-command":
                if not self.commands:
                    return ["(the bot declares no slash command: use --platform slack-dm)"]
                return self._slash(self.commands[0], text)
            body = json.dumps(self._dm(text)).encode()
            return self._answered(
                self._post("/slack/events", body, self._slack_headers(body, wire.JSON))
            )
        if self.platform == "whatsapp":
            return self._whatsapp_post(self._whatsapp("text", {"body": text}))
        return self._messenger_post(self._messenger({"text": text}))

    def press(self, number: int) -> list[str]:
        """Press button ``number`` (1-based, as printed) of the replies shown last."""
        if not 1 <= number <= len(self.buttons):
            return [f"(no button #{number}: the last replies had {len(self.buttons)})"]
        button = self.buttons[number - 1]
        if "prompt" in button:  # a suggested prompt: its message, as if typed
            return self.send(str(button["prompt"]))
        if button.get("url"):
            return [f"(a link: {button['url']})"]
        if self.platform.startswith("slack"):
            payload = self._interaction(
                "block_actions",
                actions=[{
                    "type": "button",
                    "action_id": button["action"],
                    "block_id": button.get("block") or "b0",
                    "value": button.get("value", ""),
                    "action_ts": f"{time.time():.6f}",
                }],
                container={"type": "message", "channel_id": self.channel,
                           "message_ts": f"{time.time():.6f}"},
                channel={"id": self.channel},
                response_url=self._response_url(),
            )  # fmt: skip
            return self._interact(payload)
        if self.platform == "whatsapp":
            kind = button.get("type") or "button_reply"
            tapped = {"type": kind, kind: {"id": button["payload"], "title": button["label"]}}
            return self._whatsapp_post(self._whatsapp("interactive", tapped))
        if button.get("type") == "postback":
            postback = {"mid": f"m_{uuid.uuid4().hex}", "title": button["label"],
                        "payload": button["payload"]}  # fmt: skip
            return self._messenger_post(self._messenger(None, postback=postback))
        message = {"text": button["label"], "quick_reply": {"payload": button["payload"]}}
        return self._messenger_post(self._messenger(message))

    def submit(self, values: dict[str, str]) -> list[str]:
        """Submit the modal the bot opened last, with ``values`` by field (block id)."""
        view = self.modal
        if view is None:
            return ["(no form is open)"]
        self.modal = None
        submitted = wire.submitted_view(view, values)
        payload = self._interaction("view_submission", view=submitted)
        body = urlencode({"payload": json.dumps(payload)}).encode()
        answer = self._post("/slack/events", body, self._slack_headers(body, wire.FORM))
        refused = _form_errors(answer)
        if refused:
            # Slack keeps the modal open with a message under each field: so do we.
            self.modal = view
            return [f"(the form was refused: {name}: {text})" for name, text in refused.items()]
        return self._answered(answer)

    def form_fields(self) -> list[dict[str, Any]]:
        """The open modal's inputs: name, label, options, optional."""
        fields = []
        for block in (self.modal or {}).get("blocks") or []:
            if block.get("type") == "input":
                element = block.get("element") or {}
                options = [o.get("value") for o in element.get("options") or []]
                label = (block.get("label") or {}).get("text", "")
                optional = bool(block.get("optional"))
                fields.append({"name": block.get("block_id"), "label": label,
                               "options": options, "optional": optional})  # fmt: skip
        return fields

    # -- requests -------------------------------------------------------------------------------

    def _answered(self, answer: requests.Response) -> list[str]:
        if answer.status_code != 200:
            return [f"(the server answered {answer.status_code}: {answer.text[:200]})"]
        return self._wait_for_replies()

    def _messenger_post(self, data: dict[str, Any]) -> list[str]:
        body = json.dumps(data).encode()
        headers = wire.meta_headers(body, secret=self._secret("MESSENGER_APP_SECRET"))
        return self._answered(self._post("/messenger/webhook", body, headers))

    def _whatsapp_post(self, data: dict[str, Any]) -> list[str]:
        return self._answered(self._whatsapp_post_raw(data))

    def _whatsapp_post_raw(self, data: dict[str, Any]) -> requests.Response:
        """A webhook, signed with the app secret as Meta signs it."""
        body = json.dumps(data).encode()
        headers = wire.meta_headers(body, secret=self._secret("WHATSAPP_APP_SECRET"))
        return self._post("/whatsapp/webhook", body, headers)

    def _whatsapp(self, kind: str, content: dict[str, Any]) -> dict[str, Any]:
        """A Cloud API webhook with one message, as Meta sends it."""
        return wire.whatsapp_event(number=self.channel, user=self.user, kind=kind, content=content)

    def _where(self) -> tuple[str, str]:
        """The platform and workspace the server keys this conversation under."""
        if self.platform in ("messenger", "whatsapp"):
            return self.platform, self.channel
        return "slack", self.team

    def _interaction(self, kind: str, **fields: Any) -> dict[str, Any]:
        return wire.interaction(kind, team=self.team, user=self.user, **fields)

    def _interact(self, payload: dict[str, Any]) -> list[str]:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self._answered(
            self._post("/slack/events", body, self._slack_headers(body, wire.FORM))
        )

    def _dm(self, text: str) -> dict[str, Any]:
        return wire.slack_dm(
            team=self.team, channel=self.channel, user=self.user, text=text, thread=self.thread
        )

    def start_assistant(self, viewing: str | None = None) -> list[str]:
        """Open an assistant thread, as Slack's assistant pane does (``viewing``: the channel
        the user is looking at), and enter it; the bot's answer as printable text."""
        now = time.time()
        self.thread = f"{now:.6f}"
        event = wire.assistant_started(team=self.team, channel=self.channel, user=self.user,
                                       thread=self.thread, viewing=viewing, now=now)  # fmt: skip
        body = json.dumps(event).encode()
        return self._answered(
            self._post("/slack/events", body, self._slack_headers(body, wire.JSON))
        )

    def _messenger(
        self, message: dict[str, Any] | None, *, postback: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return wire.messenger_event(
            page=self.channel, psid=self.user, message=message, postback=postback
        )

    def _slash(self, command: str, text: str) -> list[str]:
        fields = wire.slash_command(command, text, team=self.team, channel=self.channel,
                                    user=self.user, response_url=self._response_url())  # fmt: skip
        body = urlencode(fields).encode()
        answer = self._post("/slack/events", body, self._slack_headers(body, wire.FORM))
        if answer.status_code != 200:
            return [f"(the server answered {answer.status_code}: {answer.text[:200]})"]
        shown: list[dict[str, Any]] = []
        if answer.text.strip():
            data = answer.json()
            shown.append({"text": data.get("text"), "buttons": slack_buttons(data)})
        # More may follow: a modal (views.open), further messages or a deferred answer
        # through response_url.
        wait = self.timeout if not shown else 0.3
        return self._show(shown + self._collect(wait, quiet=bool(shown)))

    def _collect(self, timeout: float, *, quiet: bool = False) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            new = self._outbox(self.cursor)
            if new:
                self.cursor = new[-1]["seq"]
                # Give the rest of a multi-message answer a moment to arrive.
                time.sleep(0.15)
                more = self._outbox(self.cursor)
                if more:
                    self.cursor = more[-1]["seq"]
                return self._finish_streams(new + more)
            if time.monotonic() >= deadline:
                return []
            time.sleep(0.05)

    def _finish_streams(self, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A streamed answer (its text so far, as the fake Slack grows it) waited for until
        it stops (a minute at most), then shown once, whole: the latest of each stream."""
        deadline = time.monotonic() + STREAM_WAIT
        while _streaming(found) and time.monotonic() < deadline:
            time.sleep(0.1)
            more = self._outbox(self.cursor)
            if more:
                self.cursor = more[-1]["seq"]
                found += more
        last = {str(m["raw"]["stream"]): m["seq"] for m in found if _stream_of(m)}
        return [m for m in found if not _stream_of(m) or last[_stream_of(m)] == m["seq"]]

    def _wait_for_replies(self) -> list[str]:
        first = min(self.timeout, 1.0)
        found = self._collect(first)
        if not found and self.timeout > first:
            # A turn that ran and will send nothing (a dead letter, a duplicate, a bot that
            # answers nothing) is known at once: say so rather than wait out the timeout.
            entry = self._journal_entry()
            if isinstance(entry, dict) and (
                entry.get("outcome") != "applied" or not (entry["replies"] or entry["effects"])
            ):
                return [self._silence(entry)]
            found = self._collect(self.timeout - first)
        if not found:
            return [self._silence(self._journal_entry())]
        return self._show(found)

    def _journal_entry(self) -> dict[str, Any] | bool | None:
        """The server's record of the request sent last (:func:`~handlers.tools.silence.
        entry_of`), from its delivery journal (``GET /_inspector/deliveries``; a server
        without that route: the inspector's view); ``False`` when the server keeps none."""
        platform, team = self._where()
        params = {"platform": platform, "team": team, "channel": self.channel,
                  "user": self.user}  # fmt: skip
        try:
            answer = self._tool(self.url, "/_inspector/deliveries", params)
            if answer.status_code == 404:
                answer = self._tool(self.url, "/_inspector/view", params)
            found = answer.json() if answer.status_code == 200 else None
        except (ChatError, ValueError):
            return False
        return entry_of(found, user=self.user, since=self._sent_at - 0.5)

    def _silence(self, entry: dict[str, Any] | bool | None) -> str:
        platform, workspace = self._where()
        return why_silent(entry, partition=f"{platform}#{workspace}#{self.user}")

    def more(self, timeout: float | None = None) -> list[str]:
        """Replies that arrive later (a deferred turn's, an effect's follow-up), if any."""
        return self._show(self._collect(self.timeout if timeout is None else timeout))

    def _show(self, messages: list[dict[str, Any]]) -> list[str]:
        """Printable replies; their buttons are numbered (``#1``) for :meth:`press`. Replies
        with buttons replace the ones shown before; replies without any keep them."""
        lines, self.buttons, opened = render(messages, buttons=self.buttons, thread=self.thread)
        if opened is not None:
            self.modal = opened
        return lines

    def state(self) -> Any:
        """What the running server's store holds for this conversation (asked of the server,
        so it is the store the server uses, whatever this process's environment says)."""
        platform, workspace = self._where()
        params = {"platform": platform, "workspace": workspace, "channel": self.channel,
                  "user": self.user}  # fmt: skip
        answer = self._tool(self.url, "/_fake/state", params)
        if answer.status_code == 404:
            return {"error": "this server does not show state (make run does)"}
        if answer.status_code != 200:
            return {"error": f"the server answered {answer.status_code}: {answer.text[:200]}"}
        found: dict[str, Any] = answer.json()
        return None if found.get("state") is None else found


def bot_commands(reference: str) -> list[str]:
    """The slash commands of the bot ``reference`` names (``BOT``; empty: the default)."""
    from bot.spec import DEFAULT_BOT
    from handlers.entry import load_bot, spec_of
    from handlers.settings import ConfigError

    try:
        return sorted(spec_of(load_bot(reference or DEFAULT_BOT)).commands)
    except ConfigError:
        return []


def _form_errors(answer: requests.Response) -> dict[str, str]:
    """The field errors of a ``view_submission`` ack (``response_action: errors``), if any."""
    if answer.status_code != 200 or "json" not in answer.headers.get("content-type", ""):
        return {}
    try:
        data = answer.json()
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("response_action") != "errors":
        return {}
    errors = data.get("errors")
    return {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {}


#: Seconds ``make chat`` waits for a streamed answer to finish.
STREAM_WAIT = 60.0


def _stream_of(message: dict[str, Any]) -> str:
    """The stream a fake-Slack message is a version of (``""``: none)."""
    return str((message.get("raw") or {}).get("stream") or "")


def _streaming(found: list[dict[str, Any]]) -> bool:
    """Whether a stream among ``found`` has not stopped yet."""
    latest: dict[str, bool] = {}
    for message in found:
        if _stream_of(message):
            latest[_stream_of(message)] = bool(message["raw"].get("streaming"))
    return any(latest.values())
