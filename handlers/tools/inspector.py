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
- ``GET /_inspector/deliveries``: the journal's entries for one identity (``platform``,
  ``team``, ``channel``; ``user`` too: that user's only) after ``after`` (a ``seq``), and
  the last ``seq``: what ``make chat`` reads to say why no reply came (a request dropped
  or refused before any turn, with the reason; a turn that failed).
- ``POST /_inspector/retry``: replay a dead letter (``pk``, ``sk``) through the platform's
  edge, as ``make admin ARGS="retry ..."`` does.
- ``GET /_inspector/transcript``: the channel's (or Messenger conversation's) turns so far as
  a transcript (``bot.transcripts``); ``POST /_inspector/replay``: replay a transcript (the
  JSON object itself, or ``{"id": name}``: ``<name>.json`` of the transcripts folder,
  ``.data/transcripts/``; never a path a request names) against the running bot and say
  where it differs.

Its actions (``POST``) come only from its own page: ``handlers.tools.guard`` refuses another
origin, a body that is not ``application/json``, and a request without the per-run secret
the page is served with (``X-Inspector-Secret``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import parse_qs, urlsplit

from handlers.tools import inspector_actions, inspector_transcripts
from handlers.tools.inspector_transcripts import TRANSCRIPT_ID, TRANSCRIPTS
from handlers.tools.journal import KEEP, Capture, Journal, bot_part, who
from handlers.tools.journal_file import keep_on_disk

if TYPE_CHECKING:
    from handlers.tools.local import LocalApp

PAGE = Path(__file__).with_name("inspector.html")
#: Where the page's per-run secret goes (``guard.SECRET_HEADER`` comes back with it).
SECRET_SLOT = b"__INSPECTOR_SECRET__"
#: The page carries the secret: never framed by another site, never cached.
PAGE_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
Answer = tuple[int, dict[str, str], bytes]


def _json(status: int, data: Any) -> Answer:
    return status, {"content-type": "application/json"}, json.dumps(data).encode()


class Inspector:
    """The inspector's routes, over the local server's app."""

    def __init__(
        self,
        app: LocalApp,
        *,
        transcripts: Path = TRANSCRIPTS,
        out: TextIO | None = None,
        journal: Path | None = None,
    ) -> None:
        self.app = app
        self.transcripts = transcripts
        #: ``out``: where a failed turn's traceback is printed (``None``: standard error).
        self.journal = Journal(out=out)
        # Kept beside the store (``journal``): transcripts outlive a restart.
        keep_on_disk(self.journal, journal, bot=app.slack.spec.name, keep=KEEP)
        for edge in (app.slack, app.messenger):
            edge.pipeline.journal = self.journal.record
        # Why an edge dropped a request: its warnings, caught per request thread.
        self.capture = Capture()
        logging.getLogger("handlers").addHandler(self.capture)

    def close(self) -> None:
        logging.getLogger("handlers").removeHandler(self.capture)

    def webhook(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes,
        run: Callable[[], Answer],
    ) -> Answer:  # fmt: skip
        """``run`` a platform's request; one the edge answered without running a turn, with
        a warning or a 4xx, goes in the journal as ``dropped`` or ``refused``, with the
        reason its log line gave."""
        before = self.journal.recorded_here()
        with self.capture.during() as records:
            answer = run()
        status = answer[0]
        if method != "POST" or self.journal.recorded_here() != before:
            return answer  # a turn ran (or was handed off): the journal has it
        warnings = [r for r in records if r.levelno >= logging.WARNING]
        if warnings or status >= 400:
            reason = warnings[-1].getMessage() if warnings else f"answered {status}"
            outcome = "refused" if status >= 400 else "dropped"
            self.journal.drop(who(path, headers, body), outcome=outcome, reason=reason,
                              status=status)  # fmt: skip
        return answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"

    def dispatch(self, method: str, target: str, body: bytes) -> Answer | None:
        """The answer to an inspector route; ``None``: not one of its routes."""
        path = urlsplit(target).path
        query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
        if path == "/" and method == "GET":
            page = PAGE.read_bytes().replace(SECRET_SLOT, self.app.guard.secret.encode())
            return 200, dict(PAGE_HEADERS), page
        if not path.startswith("/_inspector/"):
            return None
        try:
            data = json.loads(body or b"{}") if method == "POST" else {}
            if not isinstance(data, dict):
                raise ValueError(f"the body is a JSON object, not {type(data).__name__}")
            if path == "/_inspector/view" and method == "GET":
                return _json(200, self.view(query))
            if path == "/_inspector/deliveries" and method == "GET":
                return _json(200, self.deliveries(query))
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
        if platform not in ("slack", "messenger", "whatsapp"):
            raise ValueError(f"unknown platform {platform!r}")
        default = ("T0LOCAL", "D0LOCAL", "U0LOCAL")
        if platform == "messenger":
            default = ("1000000001", "1000000001", "2000000001")
        elif platform == "whatsapp":  # the business number's id, a user's phone number
            from handlers.tools.chat_client import WHATSAPP_NUMBER, WHATSAPP_USER

            default = (WHATSAPP_NUMBER, WHATSAPP_NUMBER, WHATSAPP_USER)
        team = str(query.get("team") or default[0])
        one_to_one = platform in ("messenger", "whatsapp")
        channel = team if one_to_one else str(query.get("channel") or default[1])
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
        journal = self.journal.of(platform, team, channel, user if platform != "slack" else None)
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

    def deliveries(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """The journal for one identity after ``after``: ``{"seq": last, "deliveries":
        [...]}``, each with its ``outcome`` and, for ``dropped``, ``refused`` and ``dead
        letter``, its ``reason``."""
        platform, team, channel, _ = self._who(query)
        after = int(query.get("after") or 0)
        user = str(query.get("user") or "") or None
        entries = self.journal.of(platform, team, channel, user)
        return {"seq": self.journal.seq, "deliveries": [e for e in entries if e["seq"] > after]}

    def dead_letters(self, platform: str, team: str, channel: str, user: str) -> list[Any]:
        """The dead letters of the conversation: on Slack, every user's of the channel seen
        since the server started (and the form's user's), each with its own user."""
        from sessions import ConversationKey, codec
        from sessions.keys import partition_from_pk

        edges: dict[str, Any] = {"messenger": self.app.messenger, "whatsapp": self.app.whatsapp}
        edge = edges.get(platform, self.app.slack)
        users = [user]
        if platform == "slack":
            for entry in self.journal.of(platform, team, channel, None):
                if entry["user"] and entry["user"] not in users:
                    users.append(entry["user"])
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for someone in users:
            if platform == "messenger":
                key = ConversationKey.messenger(page=team, psid=someone)
            elif platform == "whatsapp":
                key = ConversationKey("whatsapp", team, team, someone)
            else:
                key = ConversationKey.slack(team=team, channel=channel, user=someone)
            for item in edge.pipeline.stored(key):
                for sk, letter in self.app.sessions.dead_letters(partition_from_pk(item.pk)):
                    if not sk.startswith(item.sk + "#evt#") or (item.pk, sk) in found:
                        continue
                    job = None
                    if letter.payload is not None:
                        try:
                            job = codec.decode(letter.payload)
                        except ValueError:
                            job = None
                    owner = _owner(job)
                    found[(item.pk, sk)] = {
                        "pk": item.pk,
                        "sk": sk,
                        "scope": item.scope,
                        "user": owner.get("user") or someone,
                        "channel": owner.get("channel") or channel,
                        "said": owner.get("said"),
                        "error": letter.error,
                        "at": letter.committed_at,
                        "replayable": letter.payload is not None,
                    }
        return sorted(found.values(), key=lambda letter: letter["at"])

    # -- doing what a user does --------------------------------------------------------------

    def act(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Sign and send one user action to the server's own edge
        (:mod:`handlers.tools.inspector_actions`)."""
        return inspector_actions.act(self.app, self.url, self._who(data), data)

    # -- dead letters ----------------------------------------------------------

    def retry(self, pk: str, sk: str) -> dict[str, Any]:
        """Replay one dead letter through its platform's edge (the Lambda entry of a job)."""
        from sessions import codec
        from sessions.keys import partition_from_pk

        partition = partition_from_pk(pk)
        letter = dict(self.app.sessions.dead_letters(partition)).get(sk)
        if letter is None or letter.payload is None:
            return {"ok": False, "error": "no such dead letter (or no replay payload)"}
        job = dict(codec.decode(letter.payload), retry_failed=True)
        edges: dict[str, Any] = {"slack": self.app.slack, "whatsapp": self.app.whatsapp}
        edge = edges.get(partition.platform, self.app.messenger)
        edge.handle({"sessions_deferred": job}, None)
        again = dict(self.app.sessions.dead_letters(partition)).get(sk)
        if again is not None:
            return {"ok": False, "error": f"the replay failed again: {again.error}"}
        return {"ok": True}

    def transcript(self, query: Mapping[str, Any]) -> Any:
        name = self.app.slack.spec.name
        return inspector_transcripts.transcript(self.journal, self._who(query), name=name)

    def replay(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Replay a transcript (:mod:`handlers.tools.inspector_transcripts`)."""
        bot = self.app.slack.spec.bot
        return inspector_transcripts.replay(data, folder=self.transcripts, bot=bot)


def _owner(job: Any) -> dict[str, Any]:
    """Whose turn a dead letter's replay payload is (a delivery; an effect's or a timer's
    origin): user, channel, and what they did."""
    while isinstance(job, Mapping):
        key = job.get("key")
        message = job.get("message")
        if isinstance(key, Mapping) and isinstance(message, Mapping):
            said = [message.get(part) for part in ("command", "text", "action", "value")]
            return {
                "user": key.get("user") or key.get("psid"),
                "channel": key.get("channel") or key.get("page"),
                "said": " ".join(str(part) for part in said if part),
            }
        job = job.get("origin") or job.get("delivery")
    return {}


#: The journal's and the transcripts' names, kept importable from here.
__all__ = ["TRANSCRIPTS", "TRANSCRIPT_ID", "Inspector", "Journal", "bot_part"]
