"""The world the whole-product model (``tests/property/test_product_model.py``) drives: one
store, one scheduler, a fake Slack/Graph HTTP server, and "containers": edges built from the
settings, each with its own caches (membership marks, page tokens), as separately started
Lambda containers of the Slack and Messenger functions would be. Requests are really signed;
the admin CLI is run as an operator runs it; timers fire by handing a schedule's payload to
a container, as EventBridge Scheduler invokes the function.

The checks on what the world did (``check_*``) are named, one promise each, so a failing one
says which promise broke.
"""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import handlers.messenger
import handlers.slack
from bot import timers as timer_rules
from handlers.settings import Settings, from_env
from handlers.store import sessions_from_settings
from handlers.tools import admin
from sessions import ConversationKey, Sessions
from sessions.keys import partition_from_pk
from sessions.schedules import Schedule, schedule_name, with_occurrence, workspace_prefix
from sessions.store import Store
from tests import messenger_requests as mr
from tests import slack_requests as sr
from tests.fakes import Call, FakeSlack, QueueDeferrer

#: The bots, by the name the model uses (``tests.bots.model``).
BOTS = {
    "conv": "tests.bots.model:conversation",
    "channel": "tests.bots.model:channel",
    "shared": "tests.bots.model:shared",
}
#: The bot the operator's admin CLI is configured with (its forget turn runs on a delete).
ADMIN_BOT = BOTS["shared"]
DEFAULT_TOKEN = "page-token-default"
#: A private text carries this: it must never be posted where others see it.
PRIVATE = "P!"

_numbers = itertools.count(1)


class InjectedSchedulerError(RuntimeError):
    """The scheduler refused a call (EventBridge throttled it, say): it can heal."""


class FlakyScheduler:
    """The real (SQLite) scheduler, whose next ``fail`` creates or deletes raise."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fail = 0
        self.lock = threading.Lock()

    def _maybe_fail(self) -> None:
        with self.lock:
            if self.fail > 0:
                self.fail -= 1
                raise InjectedSchedulerError("scheduler unavailable (injected)")

    def create(self, schedule: Schedule) -> None:
        self._maybe_fail()
        self.inner.create(schedule)

    def delete(self, name: str) -> None:
        self._maybe_fail()
        self.inner.delete(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Container:
    """One warm container of each function, for each bot: built lazily, lost in a crash."""

    world: World
    edges: dict[tuple[str, str], Any] = field(default_factory=dict)

    def edge(self, platform: str, bot: str) -> Any:
        key = (platform, bot)
        if key not in self.edges:
            self.edges[key] = self.world.build(platform, bot)
        return self.edges[key]


@dataclass(frozen=True)
class Ids:
    """The ids of one example: its own workspace, pages and users, so that examples sharing
    a store never meet."""

    team: str
    channel: str
    slack_users: tuple[str, ...]
    page_default: str
    page_own: str
    account: str
    psids: tuple[str, ...]

    @classmethod
    def fresh(cls) -> Ids:
        n = next(_numbers) + int(time.time()) % 100_000 * 1000
        return cls(
            team=f"T{n}",
            channel=f"C{n}",
            slack_users=tuple(f"U{n}{i}" for i in range(3)),
            page_default=f"1{n:09d}",
            page_own=f"2{n:09d}",
            account=f"17{n:09d}",
            psids=tuple(f"5{n:09d}{i}" for i in range(3)),
        )


class World:
    """Everything one example touches. ``calls_from``: the fake's calls before it began."""

    def __init__(
        self, *, fake: FakeSlack, store: Store, scheduler: FlakyScheduler, containers: int
    ) -> None:
        self.fake = fake
        self.store = store
        self.scheduler = scheduler
        self.settings: Settings = from_env()
        #: Each bot's function hands off to itself: one queue per bot.
        self.deferrers = {bot: QueueDeferrer() for bot in BOTS}
        self.ids = Ids.fresh()
        self.calls_from = len(fake.calls)
        self.containers = [Container(self) for _ in range(containers)]
        self.sessions = sessions_from_settings(self.settings, store=store, scheduler=scheduler)
        self.acks: list[dict[str, Any]] = []  # slash commands' answers (their ack bodies)
        self._clock_ms = int(time.time() * 1000)

    def build(self, platform: str, bot: str) -> Any:
        sessions = sessions_from_settings(self.settings, store=self.store, scheduler=self.scheduler)
        module = handlers.slack if platform == "slack" else handlers.messenger
        from handlers.entry import load_bot

        return module.build(
            self.settings, sessions=sessions, bot=load_bot(BOTS[bot]), deferrer=self.deferrers[bot]
        )

    def crash(self, index: int) -> None:
        self.containers[index] = Container(self)

    def now_ms(self) -> int:
        """A platform clock in milliseconds, always moving on."""
        self._clock_ms = max(self._clock_ms + 1, int(time.time() * 1000))
        return self._clock_ms

    def calls(self) -> list[Call]:
        with self.fake.lock:
            return list(self.fake.calls[self.calls_from :])

    # -- requests ------------------------------------------------------------------------------

    def slack_event(self, *, user: str, channel: str, text: str, event_id: str) -> Any:
        """A message event; built again (signed now) at each delivery, as Slack retries."""
        ms = self.now_ms()
        ts = f"{ms // 1000}.{ms % 1000:03d}100"
        body = sr.dm_body(text, team=self.ids.team, channel=channel, user=user, event_id=event_id)
        body["event"]["ts"] = body["event"]["event_ts"] = ts
        body["event"]["channel_type"] = "im" if channel.startswith("D") else "channel"
        body["event_time"] = ms // 1000
        return body, ms / 1000

    def slash(self, *, user: str, channel: str, text: str) -> tuple[dict[str, Any], float]:
        name = uuid.uuid4().hex[:8]
        event = sr.slash(
            text, team=self.ids.team, channel=channel, user=user, command="/model",
            response_url=self.fake.response_url(name),
        )  # fmt: skip
        return event, time.time()

    def button(self, *, user: str, channel: str, value: str) -> tuple[dict[str, Any], float]:
        ms = self.now_ms()
        event = sr.block_action(
            value, team=self.ids.team, channel=channel, user=user,
            response_url=self.fake.response_url(uuid.uuid4().hex[:8]),
            action_id="model:vote", action_ts=f"{ms / 1000:.6f}",
        )  # fmt: skip
        return event, ms / 1000

    def meta_body(self, *, platform: str, page: str, psid: str, text: str, mid: str) -> Any:
        ms = self.now_ms()
        message = mr.text(text, psid=psid, page=page, mid=mid, timestamp=ms)
        kind = "instagram" if platform == "instagram" else "page"
        return {"object": kind, "entry": [{"id": page, "time": ms, "messaging": [message]}]}, (
            ms / 1000
        )

    def call(self, container: int, platform: str, bot: str, event: Mapping[str, Any]) -> Any:
        edge = self.containers[container].edge("slack" if platform == "slack" else "messenger", bot)
        answer = edge.handle(event)
        return answer

    # -- the operator --------------------------------------------------------------------------

    def admin(self, *argv: str, stdin: str = "") -> int:
        return admin.main([*argv], stdin=io.StringIO(stdin))

    # -- timers --------------------------------------------------------------------------------

    def fire(self, container: int, schedule: Schedule, occurrence: Any, bot: str) -> bool:
        """Hand a schedule's payload to a container, as EventBridge Scheduler invokes our
        function; whether it returned (a raise is a failed invocation, retried)."""
        platform = "slack" if schedule.target == "slack" else "messenger"
        edge = self.containers[container].edge(platform, bot)
        try:
            edge.handle(with_occurrence(schedule.payload, occurrence))
        except Exception:
            return False
        return True

    def run_job(self, container: int, job: dict[str, Any], bot: str) -> bool:
        """Run a handed-off job in a container of its bot's function (of the platform the
        job is of); whether it returned (a raise: Lambda retries it)."""
        slack = '"platform": "slack"' in json.dumps(job)
        edge = self.containers[container].edge("slack" if slack else "messenger", bot)
        try:
            edge.run_deferred(job)
        except Exception:
            return False
        return True

    # -- what is stored ------------------------------------------------------------------------

    def workspaces(self) -> list[tuple[str, str]]:
        ids = self.ids
        return [
            ("slack", ids.team),
            ("messenger", ids.page_default),
            ("messenger", ids.page_own),
            ("instagram", ids.account),
        ]

    def partitions(self, *, indexed: bool = True) -> list[str]:
        """The partitions of this example's workspaces: found by the workspaces' index, or
        (``indexed=False``, one request less per workspace) every partition its users and
        channels may have."""
        if not indexed:
            ids = self.ids
            users = [f"slack#{ids.team}#{u}" for u in ids.slack_users] + [
                f"{platform}#{page}#{psid}"
                for platform, page, psid in zip(
                    ("messenger", "messenger", "instagram"),
                    (ids.page_default, ids.page_own, ids.account),
                    ids.psids,
                    strict=True,
                )
            ]
            channels = [ids.channel, *(f"D{u[1:]}" for u in ids.slack_users)]
            return users + [f"slack#{ids.team}#{c}#channel" for c in channels]
        found: list[str] = []
        for platform, workspace in self.workspaces():
            found += self.store.workspace_partitions(platform, workspace)
        return sorted(set(found))

    def exports(self, *, indexed: bool = True) -> dict[str, dict[str, Any]]:
        """Everything stored for every partition of this example, opened."""
        return {
            pk: self.sessions.export(partition_from_pk(pk))
            for pk in self.partitions(indexed=indexed)
        }

    def items(self, pk: str) -> list[tuple[str, Any]]:
        return self.store.user_items(partition_from_pk(pk))

    def schedules(self) -> list[Schedule]:
        found: list[Schedule] = []
        for platform, workspace in self.workspaces():
            found += self.scheduler.inner.pending(workspace_prefix(platform, workspace))
        return found

    def pending_timers(self, exports: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Schedule name -> timer entry, for every timer pending in a live stored state (of
        ``exports``: every partition's, opened)."""
        pending: dict[str, dict[str, Any]] = {}
        for pk, export in exports.items():
            for conversation in _live(export):
                sk = conversation["channel"]
                table = timer_rules.split(_first_scope(conversation["state"]))[1]
                platform, workspace = pk.split("#")[:2]
                for entry in table.values():
                    name = schedule_name(platform, workspace, pk, sk, str(entry["id"]))
                    pending[name] = entry
        return pending

    @staticmethod
    def log_of(exports: Mapping[str, Any], key: ConversationKey) -> list[list[str]] | None:
        """The ``log`` the model's bots keep in ``key``'s live state (of ``exports``)."""
        export = exports.get(key.pk)
        found = [c for c in _live(export) if c["channel"] == key.sk] if export else []
        if not found:
            return None
        state = timer_rules.split(_first_scope(found[0]["state"]))[0]
        if isinstance(state, Mapping) and "__forgotten__" in state:
            state = state["state"]
        if not isinstance(state, Mapping):
            return None
        return [list(e) for e in state.get("log", [])]


def _live(export: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for c in export["conversations"] if not (c["expired"] or c["deleted"])]


def _first_scope(stored: Any) -> Any:
    """A multi-scope bot's stored value is one per scope: the first holds the timers."""
    if isinstance(stored, list | tuple):
        return stored[0] if stored else None
    return stored


def graph_token(call: Call) -> str:
    return parse_qs(urlsplit(call.path).query).get("access_token", [""])[0]


def text_of(call: Call) -> str:
    return json.dumps(call.body, ensure_ascii=False)


def public(call: Call) -> bool:
    """Whether others than the user see what this call posts."""
    if call.path.startswith("/api/chat.postMessage"):
        return not str(call.body.get("channel", "")).startswith("D")
    if call.path.startswith("/response/"):
        return call.body.get("response_type") == "in_channel"
    return False


def first(items: Iterable[Any], test: Callable[[Any], bool]) -> Any:
    return next((i for i in items if test(i)), None)


__all__ = ["BOTS", "DEFAULT_TOKEN", "PRIVATE", "FlakyScheduler", "Ids", "Sessions", "World"]
