"""The chat simulator (``make chat``): talk to the running local server as Slack or Messenger.

Each line you type is sent as a really signed request, the way the platform would send it:
a Slack DM (Events API ``message.im``), a Slack slash command (``/todo <line>``), or a
Messenger message. The bot's replies are read back from the server's fake Slack/Graph routes
(or from the slash command's HTTP answer) and printed. ``/state`` shows what is stored for the
conversation, ``/quit`` (or Ctrl-D) leaves.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import requests

from handlers.local import CONFIG, read_config

PLATFORMS = ("slack-dm", "slack-command", "messenger")


class ChatError(RuntimeError):
    """Something the user can fix (no server, no secrets); one line says what."""


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
    ) -> None:
        if platform not in PLATFORMS:
            raise ChatError(f"unknown platform {platform!r}: choose one of {', '.join(PLATFORMS)}")
        self.url = url.rstrip("/")
        self.platform = platform
        messenger = platform == "messenger"
        self.user = user or ("2000000001" if messenger else "U0LOCAL")
        default_channel = (
            "1000000001" if messenger else ("D0LOCAL" if platform == "slack-dm" else "C0LOCAL")
        )
        self.channel = channel or default_channel
        self.team = team
        env = {**read_config(CONFIG), **{k: v for k, v in os.environ.items() if v}}
        self.secrets = secrets or env
        self.timeout = timeout
        self.http = requests.Session()
        self.cursor = len(self._outbox(0))

    # -- transport ----------------------------------------------------------------------------

    def _outbox(self, after: int) -> list[dict[str, Any]]:
        try:
            answer = self.http.get(f"{self.url}/_fake/outbox", params={"after": after}, timeout=5)
        except requests.ConnectionError as exc:
            raise ChatError(f"no server at {self.url}: start it with `make run`") from exc
        if answer.status_code != 200:
            return []
        messages: list[dict[str, Any]] = answer.json()["messages"]
        return messages

    def _secret(self, name: str) -> str:
        value = self.secrets.get(name)
        if not value:
            raise ChatError(f"{name} is not set and {CONFIG} does not exist: run `make run` first")
        return value

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
        try:
            return self.http.post(f"{self.url}{path}", data=body, headers=headers, timeout=30)
        except requests.ConnectionError as exc:
            raise ChatError(f"no server at {self.url}: start it with `make run`") from exc

    def _slack_headers(self, body: bytes, content_type: str) -> dict[str, str]:
        ts = str(int(time.time()))
        base = b"v0:" + ts.encode() + b":" + body
        secret = self._secret("SLACK_SIGNING_SECRET").encode()
        signature = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
        return {
            "content-type": content_type,
            "x-slack-request-timestamp": ts,
            "x-slack-signature": signature,
        }

    # -- one line -------------------------------------------------------------------------------

    def send(self, text: str) -> list[str]:
        """Send one line; return the bot's replies as printable text."""
        if self.platform == "slack-command":
            return self._slash(text)
        if self.platform == "slack-dm":
            body = json.dumps(self._dm(text)).encode()
            answer = self._post(
                "/slack/events", body, self._slack_headers(body, "application/json")
            )
        else:
            body = json.dumps(self._messenger(text)).encode()
            digest = hmac.new(self._secret("MESSENGER_APP_SECRET").encode(), body, hashlib.sha256)
            headers = {
                "content-type": "application/json",
                "x-hub-signature-256": "sha256=" + digest.hexdigest(),
            }
            answer = self._post("/messenger/webhook", body, headers)
        if answer.status_code != 200:
            return [f"(the server answered {answer.status_code}: {answer.text[:200]})"]
        return self._wait_for_replies()

    def _dm(self, text: str) -> dict[str, Any]:
        now = time.time()
        return {
            "type": "event_callback",
            "team_id": self.team,
            "api_app_id": "A0LOCAL",
            "event_id": "Ev" + uuid.uuid4().hex[:12].upper(),
            "event_time": int(now),
            "event": {
                "type": "message",
                "channel_type": "im",
                "channel": self.channel,
                "user": self.user,
                "text": text,
                "ts": f"{now:.6f}",
                "client_msg_id": str(uuid.uuid4()),
            },
            "authorizations": [{"team_id": self.team, "user_id": "U0BOT", "is_bot": True}],
        }

    def _messenger(self, text: str) -> dict[str, Any]:
        now = int(time.time() * 1000)
        return {
            "object": "page",
            "entry": [
                {
                    "id": self.channel,
                    "time": now,
                    "messaging": [
                        {
                            "sender": {"id": self.user},
                            "recipient": {"id": self.channel},
                            "timestamp": now,
                            "message": {"mid": f"m_{uuid.uuid4().hex}", "text": text},
                        }
                    ],
                }
            ],
        }

    def _slash(self, text: str) -> list[str]:
        fields = {
            "command": "/todo",
            "text": text,
            "team_id": self.team,
            "channel_id": self.channel,
            "user_id": self.user,
            "user_name": "you",
            "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:12]}",
            "response_url": f"{self.url}/_fake/slack/response/{uuid.uuid4().hex[:8]}",
        }
        body = urlencode(fields).encode()
        answer = self._post(
            "/slack/events", body, self._slack_headers(body, "application/x-www-form-urlencoded")
        )
        if answer.status_code != 200:
            return [f"(the server answered {answer.status_code}: {answer.text[:200]})"]
        if answer.text.strip():
            return [_slack_text(answer.json())]
        return self._wait_for_replies()  # a deferred answer comes through response_url

    def _wait_for_replies(self) -> list[str]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            new = self._outbox(self.cursor)
            if new:
                self.cursor = new[-1]["seq"]
                # Give the rest of a multi-message answer a moment to arrive.
                time.sleep(0.15)
                more = self._outbox(self.cursor)
                if more:
                    self.cursor = more[-1]["seq"]
                return [_format(m) for m in new + more]
            time.sleep(0.05)
        return ["(no reply seen: if SLACK_API_URL/MESSENGER_API_URL point elsewhere, look there)"]

    def state(self) -> Any:
        """What the store holds for this conversation (the same store the server uses)."""
        from handlers.settings import from_env
        from handlers.store import store_from_settings
        from sessions import ConversationKey, Sessions

        if self.platform == "messenger":
            key = ConversationKey.messenger(page=self.channel, psid=self.user)
        else:
            key = ConversationKey.slack(team=self.team, channel=self.channel, user=self.user)
        conversation = Sessions(store_from_settings(from_env())).get(key)
        if conversation is None:
            return None
        return {
            "key": f"{key.pk} / {key.sk}",
            "version": conversation.version,
            "state": conversation.state,
        }


def _slack_text(message: dict[str, Any]) -> str:
    text = str(message.get("text") or "")
    for block in message.get("blocks") or []:
        accessory = block.get("accessory") or {}
        if accessory.get("type") == "button":
            text += f"  [{accessory['text']['text']}: {block['text']['text']}]"
    return _unescape(text)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _format(message: dict[str, Any]) -> str:
    text = _unescape(str(message.get("text") or ""))
    buttons = message.get("buttons") or []
    if buttons:
        text += "\n  " + "  ".join(f"[{b}]" for b in buttons)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chat", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--platform", choices=PLATFORMS, default=os.environ.get("CHAT_PLATFORM", "slack-dm")
    )
    parser.add_argument("--user", help="Slack user id (U...) or Messenger PSID (digits)")
    parser.add_argument("--channel", help="Slack channel id, or the Messenger page id")
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT') or 3000}")
    args = parser.parse_args(argv)
    try:
        client = ChatClient(args.url, platform=args.platform, user=args.user, channel=args.channel)
    except ChatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Talking to {args.url} as {args.platform} user {client.user} in {client.channel}.")
    print("Type `help` for the bot's commands, /state for the stored state, /quit to leave.")
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line:
            continue
        if line in {"/quit", "/exit"}:
            return 0
        try:
            if line == "/state":
                stored = client.state()
                if stored is None:
                    print("nothing stored for this conversation yet")
                else:
                    print(f"key: {stored['key']} (version {stored['version']})")
                    print("state: " + json.dumps(stored["state"], ensure_ascii=False))
                continue
            for reply in client.send(line):
                print("bot> " + reply.replace("\n", "\n     "))
        except ChatError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except Exception as exc:  # keep the REPL alive; say what broke in one line
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
