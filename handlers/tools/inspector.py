"""The web inspector of ``make run`` (``http://127.0.0.1:3000/``): chat with the bot as Slack
or Messenger would show it, and see beside it what the server stored.

Routes (local only, served by ``make run``, never in the deploy):

- ``GET /``: the page (``inspector.html``, one file, no build step).
- ``POST /_inspector/act``: do what a user does (type, run a slash command, press a button,
  pick an option, submit a form, tap a quick reply or postback). The server signs the
  request as the platform would and sends it to its own edge over HTTP: the page never
  writes the store, and the bot sees exactly what real traffic brings.
- ``GET /_inspector/view``: one identity's view (``platform``, ``team`` or page, ``channel``,
  ``user``, ``after``): what the fake Slack/Graph APIs received for them since ``after`` (as
  sent: blocks, quick replies, templates, modals), the stored state of every scope with its
  pending timers, the conversation's deliveries as the pipeline ran them (applied,
  duplicate, dead letter; effects and timers they started, follow-ups), and its dead
  letters.
- ``POST /_inspector/retry``: replay a dead letter (``pk``, ``sk``) through the platform's
  edge, as ``make admin ARGS="retry ..."`` does.
- ``GET /_inspector/transcript``: the channel's (or Messenger conversation's) turns so far as
  a transcript (``bot.transcripts``); ``POST /_inspector/replay``: replay a transcript against
  the running bot and say where it differs.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from handlers.tools.journal_file import keep_on_disk

if TYPE_CHECKING:
    from handlers.delivery import Delivery
    from handlers.tools.local import LocalApp
    from sessions import TurnResult

PAGE = Path(__file__).with_name("inspector.html")
#: Deliveries the journal keeps (the oldest go first).
KEEP = 2000

Answer = tuple[int, dict[str, str], bytes]


def _json(status: int, data: Any) -> Answer:
    return status, {"content-type": "application/json"}, json.dumps(data).encode()


def bot_part(state: Any) -> Any:
    """A stored first-scope state without what the runtime keeps beside the bot's own part
    (pending timers, a channel's forgotten users)."""
    from bot import timers
    from handlers import membership

    return membership.split(timers.split(state)[0])[0]


class Journal:
    """Every delivery the server's pipelines ran, in order (``Pipeline.journal``)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._seq = 0

    def record(self, delivery: Delivery, outcome: str, result: TurnResult | None) -> None:
        message = delivery.message.to_dict()
        message.pop("raw", None)
        effects = [
            e for e in (result.effects if result is not None else ()) if isinstance(e, Mapping)
        ]
        entry = {
            "at": time.time(),
            "platform": delivery.key.platform,
            "workspace": delivery.key.workspace,
            "channel": delivery.key.channel,
            "user": delivery.key.user,
            "idempotency_key": delivery.idempotency_key,
            "depth": delivery.depth,
            "replay": delivery.replay,
            "message": message,
            "outcome": outcome,
            "replies": list(result.replies) if result is not None else [],
            "effects": [e.get("name") for e in effects if e.get("kind") == "effect"],
            "timers": [
                (e["timer"]["name"] if e["kind"] == "timer_set" else f"cancel {e['id'][:10]}")
                for e in effects
                if e.get("kind") in ("timer_set", "timer_cancel")
            ],
            "version": result.version if result is not None else None,
            "state": bot_part(result.state)
            if result is not None and outcome == "applied"
            else None,
        }
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self.entries.append(entry)
            del self.entries[:-KEEP]

    def of(self, platform: str, workspace: str, channel: str, user: str | None) -> list[Any]:
        """The deliveries of a Slack channel (every user's), or of one Messenger conversation."""
        with self._lock:
            entries = list(self.entries)
        return [
            e
            for e in entries
            if e["platform"] == platform
            and e["workspace"] == workspace
            and e["channel"] == channel
            and (user is None or e["user"] == user)
        ]


class Inspector:
    """The inspector's routes, over the local server's app."""

    def __init__(self, app: LocalApp, *, journal: Path | None = None) -> None:
        self.app = app
        self.journal = Journal()
        # Kept beside the store (``journal``): transcripts outlive a restart.
        keep_on_disk(self.journal, journal, bot=app.slack.spec.name, keep=KEEP)
        for edge in (app.slack, app.messenger):
            edge.pipeline.journal = self.journal.record

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"

    def dispatch(self, method: str, target: str, body: bytes) -> Answer | None:
        """The answer to an inspector route; ``None``: not one of its routes."""
        path = urlsplit(target).path
        query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
        if path == "/" and method == "GET":
            return 200, {"content-type": "text/html; charset=utf-8"}, PAGE.read_bytes()
        if not path.startswith("/_inspector/"):
            return None
        try:
            data = json.loads(body or b"{}") if method == "POST" else {}
            if path == "/_inspector/view" and method == "GET":
                return _json(200, self.view(query))
            if path == "/_inspector/act" and method == "POST":
                return _json(200, self.act(data))
            if path == "/_inspector/retry" and method == "POST":
                return _json(200, self.retry(str(data.get("pk")), str(data.get("sk"))))
            if path == "/_inspector/transcript" and method == "GET":
                return _json(200, self.transcript(query).to_dict())
            if path == "/_inspector/replay" and method == "POST":
                return _json(200, self.replay(data))
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"error": f"{type(exc).__name__}: {exc}"})
        return _json(404, {"error": "no such inspector route"})

    # -- what one identity sees -------------------------------------------------------------

    def _who(self, query: Mapping[str, Any]) -> tuple[str, str, str, str]:
        platform = str(query.get("platform") or "slack")
        if platform not in ("slack", "messenger"):
            raise ValueError(f"unknown platform {platform!r}")
        default = ("T0LOCAL", "D0LOCAL", "U0LOCAL")
        if platform == "messenger":
            default = ("1000000001", "1000000001", "2000000001")
        team = str(query.get("team") or default[0])
        channel = team if platform == "messenger" else str(query.get("channel") or default[1])
        return platform, team, channel, str(query.get("user") or default[2])

    def view(self, query: Mapping[str, Any]) -> dict[str, Any]:
        platform, team, channel, user = self._who(query)
        after = int(query.get("after") or 0)
        messages = self.app.outbox.after(after, user=user, channel=channel, said=True)
        messages = [m for m in messages if m.get("platform") == platform]
        state = json.loads(
            self.app.state_of(
                {"platform": platform, "workspace": team, "channel": channel, "user": user}
            )[2]
        )
        journal = self.journal.of(
            platform, team, channel, user if platform == "messenger" else None
        )
        return {
            "seq": len(self.app.outbox.items),
            "messages": messages,
            "state": state,
            "journal": journal[-200:],
            "dead_letters": self.dead_letters(platform, team, channel, user),
            "bot": {
                "name": self.app.slack.spec.name,
                "commands": sorted(self.app.slack.spec.commands),
            },
            "now": time.time(),
        }

    def dead_letters(self, platform: str, team: str, channel: str, user: str) -> list[Any]:
        from sessions import ConversationKey
        from sessions.keys import partition_from_pk

        if platform == "messenger":
            key = ConversationKey.messenger(page=team, psid=user)
        else:
            key = ConversationKey.slack(team=team, channel=channel, user=user)
        edge = self.app.messenger if platform == "messenger" else self.app.slack
        found = []
        for item in edge.pipeline.stored(key):
            for sk, letter in self.app.sessions.dead_letters(partition_from_pk(item.pk)):
                if not sk.startswith(item.sk + "#evt#"):
                    continue
                found.append(
                    {
                        "pk": item.pk,
                        "sk": sk,
                        "scope": item.scope,
                        "error": letter.error,
                        "at": letter.committed_at,
                        "replayable": letter.payload is not None,
                    }
                )
        return found

    # -- doing what a user does --------------------------------------------------------------

    def act(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Sign and send one user action to the server's own edge; the answer's status and
        body (a slash command's or a form's ack)."""
        from handlers.tools.chat import ChatClient

        platform, team, channel, user = self._who(data)
        client = ChatClient(
            self.url,
            platform="messenger" if platform == "messenger" else "slack-dm",
            user=user,
            channel=channel,
            team=team,
            secrets=self.app.secrets(),
            timeout=0,
        )
        kind = str(data.get("kind") or "text")
        if platform == "messenger":
            return self._messenger(client, kind, data)
        return self._slack(client, kind, data)

    def _slack(self, client: Any, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
        if kind == "text":
            text = str(data.get("text") or "")
            word, _, rest = text.partition(" ")
            if word.startswith("/"):
                return self._slash(client, word, rest)
            if not client.channel.startswith("D"):
                return {"status": 0, "note": "in a channel the bot hears slash commands and "
                        "buttons (Slack sends it DMs and commands): type /command ..."}  # fmt: skip
            self.app.fakes.say(client.channel, client.user, text)
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
            self.app.fakes.say(client.channel, client.user, f"[{data.get('label') or kind}]")
            payload = client._interaction(
                "block_actions",
                actions=[element],
                container={"type": "message", "channel_id": client.channel,
                           "message_ts": f"{time.time():.6f}"},
                channel={"id": client.channel},
                response_url=client._response_url(),
            )  # fmt: skip
            return self._interact(client, payload)
        if kind == "submit":
            view = dict(data["view"])
            values = {str(k): str(v) for k, v in dict(data.get("values") or {}).items()}
            client.modal = view
            state: dict[str, Any] = {}
            for block in view.get("blocks") or []:
                element = block.get("element") or {}
                name = block.get("block_id")
                if block.get("type") != "input" or name not in values:
                    continue
                entry: dict[str, Any] = {"type": element.get("type")}
                if element.get("type") == "static_select":
                    entry["selected_option"] = {
                        "text": {"type": "plain_text", "text": values[name]},
                        "value": values[name],
                    }
                else:
                    entry["value"] = values[name]
                state[name] = {element.get("action_id", "value"): entry}
            submitted = {**view, "id": "V0LOCAL", "hash": uuid.uuid4().hex[:12],
                         "state": {"values": state}}  # fmt: skip
            payload = client._interaction("view_submission", view=submitted)
            return self._interact(client, payload)
        raise ValueError(f"unknown Slack action {kind!r}")

    def _slash(self, client: Any, command: str, text: str) -> dict[str, Any]:
        self.app.fakes.say(client.channel, client.user, f"{command} {text}".strip())
        fields = {
            "command": command,
            "text": text,
            "team_id": client.team,
            "channel_id": client.channel,
            "user_id": client.user,
            "user_name": "you",
            "trigger_id": client._trigger_id(),
            "response_url": client._response_url(),
        }
        body = urlencode(fields).encode()
        answer = client._post("/slack/events", body, client._slack_headers(body, FORM))
        ack = _body(answer)
        if isinstance(ack, dict) and (ack.get("text") or ack.get("blocks")):
            # What Slack shows for a command's ack: its message, to whoever ran it.
            self.app.fakes.slack_message(client.channel, client.user, ack)
        return {"status": answer.status_code, "ack": ack}

    def _interact(self, client: Any, payload: dict[str, Any]) -> dict[str, Any]:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        answer = client._post("/slack/events", body, client._slack_headers(body, FORM))
        ack = _body(answer)
        errors = {}
        if isinstance(ack, dict) and ack.get("response_action") == "errors":
            errors = {str(k): str(v) for k, v in (ack.get("errors") or {}).items()}
        return {"status": answer.status_code, "ack": ack, "errors": errors}

    def _messenger(self, client: Any, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
        if kind == "text":
            text = str(data.get("text") or "")
            self.app.fakes.say(None, client.user, text, platform="messenger")
            event = client._messenger({"text": text})
        elif kind == "quick_reply":
            label = str(data.get("label") or "")
            self.app.fakes.say(None, client.user, label, platform="messenger")
            event = client._messenger(
                {"text": label, "quick_reply": {"payload": str(data.get("payload") or "")}}
            )
        elif kind == "postback":
            label = str(data.get("label") or "")
            self.app.fakes.say(None, client.user, f"[{label}]", platform="messenger")
            postback = {"mid": f"m_{uuid.uuid4().hex}", "title": label,
                        "payload": str(data.get("payload") or "")}  # fmt: skip
            event = client._messenger(None, postback=postback)
        else:
            raise ValueError(f"unknown Messenger action {kind!r}")
        body = json.dumps(event).encode()
        import hashlib
        import hmac

        secret = client._secret("MESSENGER_APP_SECRET").encode()
        headers = {
            "content-type": JSON,
            "x-hub-signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
        }
        answer = client._post("/messenger/webhook", body, headers)
        return {"status": answer.status_code}

    # -- dead letters, transcripts ----------------------------------------------------------

    def retry(self, pk: str, sk: str) -> dict[str, Any]:
        """Replay one dead letter through its platform's edge (the Lambda entry of a job)."""
        from sessions import codec
        from sessions.keys import partition_from_pk

        partition = partition_from_pk(pk)
        letter = dict(self.app.sessions.dead_letters(partition)).get(sk)
        if letter is None or letter.payload is None:
            return {"ok": False, "error": "no such dead letter (or no replay payload)"}
        job = dict(codec.decode(letter.payload), retry_failed=True)
        edge: Any = self.app.slack if partition.platform == "slack" else self.app.messenger
        edge.handle({"sessions_deferred": job}, None)
        again = dict(self.app.sessions.dead_letters(partition)).get(sk)
        if again is not None:
            return {"ok": False, "error": f"the replay failed again: {again.error}"}
        return {"ok": True}

    def transcript(self, query: Mapping[str, Any]) -> Any:
        from bot import DEFAULT_BOT
        from bot.transcripts import Transcript, Turn

        name = self.app.slack.spec.name
        platform, team, channel, user = self._who(query)
        entries = self.journal.of(
            platform, team, channel, user if platform == "messenger" else None
        )
        turns = [
            Turn(
                user=e["user"],
                conversation=e["message"]["conversation"] or e["channel"],
                idempotency_key=e["idempotency_key"],
                message=e["message"],
                replies=e["replies"],
                state=e["state"],
            )
            for e in entries
            if e["outcome"] == "applied" and e.get("bot", name) == name
        ]
        # The bot's class, and where it was loaded from: make replay runs that one.
        return Transcript(name, platform, team, turns, os.environ.get("BOT") or DEFAULT_BOT)

    def replay(self, data: Mapping[str, Any]) -> dict[str, Any]:
        from bot.testing import replay
        from bot.transcripts import load

        transcript = load(data)
        differences = replay(self.app.slack.spec.bot, transcript)
        return {
            "turns": len(transcript.turns),
            "differences": [
                {
                    "turn": d.turn,
                    "what": d.what,
                    "said": d.said,
                    "expected": d.expected,
                    "got": d.got,
                }
                for d in differences
            ],
        }


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def _body(answer: Any) -> Any:
    text = answer.text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


__all__ = ["Inspector", "Journal", "bot_part"]
