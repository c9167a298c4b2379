"""The local server's journal of deliveries (``make run`` only, never in the deploy): every
delivery its pipelines ran and what came of it, and every request its webhooks dropped or
refused before any turn ran, with the reason, so the developer sees it where they look (the
inspector's deliveries pane, ``GET /_inspector/deliveries``) and not only in the log.

A turn that fails (a dead letter) is also printed to the terminal with the bot's traceback,
its message included: this is the developer's own machine. The deploy's logs keep only the
error's class (``sessions.privacy``): the pipeline's journal is ``None`` there.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from handlers.pipeline.delivery import Delivery
    from sessions import TurnResult

#: Deliveries the journal keeps (the oldest go first).
KEEP = 2000


def bot_part(state: Any) -> Any:
    """A stored first-scope state without what the runtime keeps beside the bot's own part
    (pending timers, a channel's forgotten users)."""
    from bot import timers
    from handlers.pipeline import membership

    return membership.split(timers.split(state)[0])[0]


class Journal:
    """Every delivery the server's pipelines ran, in order (``Pipeline.journal``), and the
    requests dropped before a turn (:meth:`drop`). ``out``: where a failed turn's traceback
    is printed (``None``: standard error, the terminal of ``make run``)."""

    def __init__(self, *, out: TextIO | None = None) -> None:
        self.entries: list[dict[str, Any]] = []
        self.out = out
        self._lock = threading.Lock()
        self._seq = 0
        self._here = threading.local()  # the last seq this thread recorded

    def _add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self.entries.append(entry)
            del self.entries[:-KEEP]
        self._here.seq = entry["seq"]

    @property
    def seq(self) -> int:
        """The last entry's number."""
        return self._seq

    def recorded_here(self) -> int:
        """The last entry this thread recorded (0: none): did a request reach the pipeline?"""
        return int(getattr(self._here, "seq", 0))

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
        if outcome == "dead letter":
            entry["reason"] = self._failed(delivery, result)
        self._add(entry)

    def _failed(self, delivery: Delivery, result: TurnResult | None) -> str:
        """Why a turn is a dead letter; the traceback printed to :attr:`out`. The pipeline
        tells the journal inside its handler of the error, so the error is the one being
        handled; a dead letter met again (a redelivery) carries its recorded description."""
        error = sys.exc_info()[1]
        if error is None:
            return str(result.error or "") if result is not None else ""
        cause = error.__cause__ or error
        reason = f"{type(cause).__name__}: {cause}"
        key = delivery.key
        where = f"{key.platform} {key.workspace} {key.channel} {key.user}"
        said = delivery.message.text or delivery.message.command or delivery.message.kind
        print(
            f"\nThe bot's turn failed ({where}, {said!r}): recorded as a dead letter; "
            "Retry it from the inspector once fixed.\n"
            + "".join(traceback.format_exception(error)),
            file=self.out or sys.stderr,
            flush=True,
        )
        return reason

    def drop(self, who: Mapping[str, Any], *, outcome: str, reason: str, status: int) -> None:
        """A request the edge answered without running a turn: ``dropped`` (acked: a
        workspace with no installation, an undeclared command) or ``refused`` (4xx: a bad
        signature, a malformed body), with the log line that says why."""
        self._add(
            {
                "at": time.time(),
                "platform": who.get("platform"),
                "workspace": who.get("workspace"),
                "channel": who.get("channel"),
                "user": who.get("user"),
                "idempotency_key": None,
                "depth": 0,
                "replay": False,
                "message": {"kind": who.get("kind") or "request", "text": who.get("text"),
                            "command": who.get("command"), "action": who.get("action")},
                "outcome": outcome,
                "reason": reason,
                "status": status,
                "replies": [],
                "effects": [],
                "timers": [],
                "version": None,
                "state": None,
            }
        )  # fmt: skip

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


class Capture(logging.Handler):
    """The warnings our loggers (``handlers.*``) log while this thread serves one request:
    why an edge dropped or refused it (log lines carry hashes and classes only)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._here = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        found = getattr(self._here, "records", None)
        if found is not None:
            found.append(record)

    @contextmanager
    def during(self) -> Iterator[list[logging.LogRecord]]:
        found: list[logging.LogRecord] = []
        self._here.records = found
        try:
            yield found
        finally:
            self._here.records = None


def who(path: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Whose a webhook request is, read off its body without trusting it (the edge refused
    it or dropped it): platform, workspace (team or page), channel, user, and what they did.
    Whatever does not read is left out."""
    found: dict[str, Any] = {}
    try:
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if path.startswith("/messenger/"):
            data = json.loads(body)
            entry = data["entry"][0]
            event = (entry.get("messaging") or [{}])[0]
            page = str(entry["id"])
            message = event.get("message") or {}
            found = {"platform": "messenger", "workspace": page, "channel": page,
                     "user": str((event.get("sender") or {}).get("id") or ""),
                     "kind": "text" if "text" in message else "postback",
                     "text": message.get("text")}  # fmt: skip
        elif path.startswith("/whatsapp/"):
            data = json.loads(body)
            value = data["entry"][0]["changes"][0]["value"]
            number = str(value["metadata"]["phone_number_id"])
            message = (value.get("messages") or [{}])[0]
            found = {"platform": "whatsapp", "workspace": number, "channel": number,
                     "user": str(message.get("from") or ""), "kind": message.get("type"),
                     "text": (message.get("text") or {}).get("body")}  # fmt: skip
        elif path.startswith("/slack/") and "json" in ctype:
            data = json.loads(body)
            event = data.get("event") or {}
            found = {"platform": "slack", "workspace": data.get("team_id"),
                     "channel": event.get("channel"), "user": event.get("user"),
                     "kind": "text", "text": event.get("text")}  # fmt: skip
        elif path.startswith("/slack/"):
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if "payload" in form:
                payload = json.loads(form["payload"])
                channel = (payload.get("channel") or {}).get("id") or (
                    payload.get("container") or {}
                ).get("channel_id")
                actions = payload.get("actions") or [{}]
                team = (payload.get("team") or {}).get("id")
                found = {"platform": "slack", "workspace": team, "channel": channel,
                         "user": (payload.get("user") or {}).get("id"), "kind": payload.get("type"),
                         "action": actions[0].get("action_id")}  # fmt: skip
            else:
                found = {"platform": "slack", "workspace": form.get("team_id"),
                         "channel": form.get("channel_id"), "user": form.get("user_id"),
                         "kind": "command", "command": form.get("command"),
                         "text": form.get("text")}  # fmt: skip
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError):
        pass
    if not found:
        platform = path.strip("/").split("/", 1)[0]
        found = {"platform": platform if platform in ("messenger", "whatsapp") else "slack"}
    return found


__all__ = ["KEEP", "Capture", "Journal", "bot_part", "who"]
