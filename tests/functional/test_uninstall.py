"""An uninstall is final in every container: several edges built separately over one store
(SQLite and DynamoDB Local), each with its own token cache. After ``app_uninstalled`` reached
one of them, no container answers or stores anything of the workspace (a cache is trusted for
``RECHECK`` seconds at most, and the creation of a conversation checks the workspace's stone);
a send that Slack answers ``token_revoked`` drops the cached token at once; the erase settles
by a one-time timer; Enterprise Grid uninstalls and revocations erase exactly what the org or
the team stored."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import handlers.slack
from examples.todo import TodoBot
from handlers.pipeline.timers import TimerLoop
from handlers.settings import from_env
from handlers.slack.installs import TableInstallationStore
from handlers.slack.oauth import RECHECK, SETTLE_AFTER, SlackOAuth
from sessions import ConversationKey, Sessions
from sessions.schedules import SQLiteScheduler
from sessions.store import Store
from tests.fakes import FakeSlack, fake_slack
from tests.functional.conftest import select_store
from tests.functional.test_install import install_link, redirect
from tests.slack_requests import dm_body, json_event


class Clock:
    """A container's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "dynamodb_local"])
def world(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[FakeSlack, Store, SQLiteScheduler]]:
    with fake_slack() as fake:
        for name, value in fake.edge_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("SLACK_BOT_TOKEN")
        monkeypatch.setenv("SLACK_CLIENT_ID", "111.222")
        monkeypatch.setenv("SLACK_CLIENT_SECRET", "client-secret")
        monkeypatch.setenv("SLACK_SCOPES", "commands,chat:write")
        store = select_store(request, monkeypatch, tmp_path)
        scheduler = SQLiteScheduler(str(tmp_path / "timers.sqlite3"))
        yield fake, store, scheduler
        scheduler.close()
        store.close()


def container(store: Store, scheduler: SQLiteScheduler) -> handlers.slack.SlackEdge:
    """A container of its own: its own edge, token cache and clock, over the shared store."""
    edge = handlers.slack.build(
        from_env(), sessions=Sessions(store, scheduler=scheduler), bot=TodoBot()
    )
    assert edge.oauth is not None
    edge.oauth.clock = Clock()
    return edge


def oauth(edge: handlers.slack.SlackEdge) -> SlackOAuth:
    assert edge.oauth is not None
    return edge.oauth


def later(edge: handlers.slack.SlackEdge, seconds: float) -> None:
    clock = oauth(edge).clock
    assert isinstance(clock, Clock)
    clock.now += seconds


def install(edge: handlers.slack.SlackEdge, code: str) -> None:
    link = install_link(edge)
    done = edge.handle(redirect(link, code))
    assert done["statusCode"] == 200, done["body"]


def say(
    edge: handlers.slack.SlackEdge,
    text: str,
    *,
    team: str | None = "T0001",
    user: str = "U0001",
    enterprise: str | None = None,
    ahead: int = 0,
) -> int:
    body = dm_body(text, user=user)
    body["event_time"] += ahead  # Slack's clock, ahead of ours
    if team is None:
        del body["team_id"]
    else:
        body["team_id"] = team
    if enterprise is not None:
        body["enterprise_id"] = enterprise
    return int(edge.handle(json_event(body))["statusCode"])


def uninstall(
    edge: handlers.slack.SlackEdge,
    *,
    team: str | None = "T0001",
    enterprise: str | None = None,
    org: bool = False,
    kind: str = "app_uninstalled",
    tokens: dict[str, list[str]] | None = None,
) -> None:
    event: dict[str, Any] = {"type": kind, "event_ts": f"{time.time():.6f}"}
    if tokens is not None:
        event["tokens"] = tokens
    body: dict[str, Any] = {
        "type": "event_callback",
        "team_id": team,
        "enterprise_id": enterprise,
        "api_app_id": "A0APP",
        "event": event,
        "event_id": f"Ev{kind[:3].upper()}{int(time.time() * 1000)}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": enterprise,
                "team_id": None if org else team,
                "user_id": "UBOT",
                "is_bot": True,
                "is_enterprise_install": org,
            }
        ],
    }
    assert edge.handle(json_event(body))["statusCode"] == 200
    assert edge.deferrer.drain(timeout=30)  # type: ignore[attr-defined]


def stored_items(sessions: Sessions, team: str, users: list[str]) -> list[Any]:
    found = []
    for user in users:
        key = ConversationKey.slack(team=team, channel="D0001", user=user)
        found += sessions.conversations(key.user_key)
    return found


def test_an_uninstall_reaches_every_container_and_nothing_is_stored_after_it(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    fake, store, scheduler = world
    a, b = container(store, scheduler), container(store, scheduler)
    install(a, "code-T0001")
    assert say(a, "add milk") == 200 and say(b, "add tea", user="U0009") == 200
    assert len(fake.posts()) == 2  # both containers know the token now
    uninstall(a)
    posted = len(fake.posts())

    # B's cache is still fresh: it may run the turn, but no conversation is created (the
    # creating commit checks the workspace's stone), so nothing is stored nor said.
    for user in ("U0002", "U0003", "U0001"):
        assert say(b, "add bread", user=user) == 200
    # Past RECHECK, B reads the stone before trusting its cache: it answers nothing.
    later(b, RECHECK + 0.1)
    assert say(b, "add jam", user="U0004") == 200
    assert oauth(b).token(None, "T0001") is None
    sessions = Sessions(store)
    assert stored_items(sessions, "T0001", ["U0001", "U0002", "U0003", "U0004", "U0009"]) == []
    assert len(fake.posts()) == posted  # nothing said after the uninstall


def test_installed_again_the_workspace_is_answered_and_stores_again(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    fake, store, scheduler = world
    a, b = container(store, scheduler), container(store, scheduler)
    install(a, "code-T0001")
    assert say(b, "add milk") == 200
    uninstall(a)
    assert say(b, "add tea") == 200
    assert stored_items(Sessions(store), "T0001", ["U0001"]) == []
    # The fake issues one code per team once: a second install of T0001 uses a new code.
    fake.used_codes.discard("code-T0001")
    install(a, "code-T0001")
    later(b, RECHECK + 0.1)
    # (An event in the uninstall's second may be from before it: one 2 s later is not.)
    assert say(b, "add bread", ahead=2) == 200
    kept = stored_items(Sessions(store), "T0001", ["U0001"])
    assert [c.state["items"][0]["text"] for c in kept] == ["bread"]


def test_a_send_answered_token_revoked_drops_the_cached_token_at_once(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    fake, store, scheduler = world
    a, c = container(store, scheduler), container(store, scheduler)
    install(a, "code-T0001")
    assert say(c, "add milk") == 200  # C caches the token
    # The bot's token is revoked: A learns it from tokens_revoked; Slack refuses it to C.
    uninstall(a, kind="tokens_revoked", tokens={"bot": ["UBOTT0001"]})
    fake.failures["/api/chat.postMessage"] = [(200, {"ok": False, "error": "token_revoked"})]
    before = len([x for x in fake.calls if x.path == "/api/chat.postMessage"])
    assert say(c, "add tea") == 200  # its reply is refused: the token is dropped at once
    assert say(c, "add jam") == 200  # read again: no bot any more, nothing sent
    assert fake.failures["/api/chat.postMessage"] == []  # the refused send happened
    calls = [x for x in fake.calls if x.path == "/api/chat.postMessage"]
    assert len(calls) == before  # (a refused call is not recorded) and none after it


class LaggingIndex:
    """The store as an eventually consistent workspace index shows it: the first query of a
    workspace's partitions misses them (DynamoDB's index can lag its table)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queries = 0

    def workspace_partitions(self, platform: str, workspace: str) -> list[str]:
        self.queries += 1
        return [] if self.queries == 1 else self.store.workspace_partitions(platform, workspace)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_the_erase_settles_by_a_one_time_timer(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    """The first pass runs after the ack; a one-time timer runs it again under the same
    generation once turns in flight can no longer commit, removing what the first pass
    could not see (here: a lagging index), and nothing of a later installation."""
    _, store, scheduler = world
    lagging = LaggingIndex(store)
    a = handlers.slack.build(
        from_env(),
        sessions=Sessions(lagging, scheduler=scheduler),
        bot=TodoBot(),  # type: ignore[arg-type]
    )
    install(a, "code-T0001")
    assert say(a, "add milk") == 200
    sessions = Sessions(store)
    uninstall(a)
    assert len(stored_items(sessions, "T0001", ["U0001"])) == 1  # missed by the first pass
    settle = [s for s in scheduler.pending() if s.name.startswith("settle.")]
    assert len(settle) == 1 and settle[0].at >= time.time() + SETTLE_AFTER - 5
    loop = TimerLoop(scheduler, lambda _target, payload: a.handle(payload))
    assert loop.fire_due(time.time() + 1) == 0  # not before turns in flight are over
    assert loop.fire_due(time.time() + SETTLE_AFTER + 1) == 1
    assert stored_items(sessions, "T0001", ["U0001"]) == []


def test_an_org_wide_uninstall_erases_exactly_the_orgs_teams(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    fake, store, scheduler = world
    a, b = container(store, scheduler), container(store, scheduler)
    install(a, "code-E0001-org")  # org-wide: answers every team of E0001
    install(a, "code-T0002")  # a workspace of its own, outside the org
    assert say(a, "add milk", team="T0042", enterprise="E0001") == 200
    assert say(b, "add tea", team="T0043", enterprise="E0001", user="U0002") == 200
    assert say(a, "add jam", team="T0002") == 200
    assert {p.headers.get("Authorization") for p in fake.posts()} == {
        "Bearer xoxb-E0001-org",
        "Bearer xoxb-T0002",
    }
    uninstall(a, team=None, enterprise="E0001", org=True)
    installs = TableInstallationStore(Sessions(store).installations)
    assert (
        installs.find_bot(enterprise_id="E0001", team_id=None, is_enterprise_install=True) is None
    )
    sessions = Sessions(store)
    assert stored_items(sessions, "T0042", ["U0001"]) == []
    assert stored_items(sessions, "T0043", ["U0002"]) == []
    assert len(stored_items(sessions, "T0002", ["U0001"])) == 1  # not the org's: kept
    posted = len(fake.posts())
    later(b, RECHECK + 0.1)
    assert say(b, "add bread", team="T0043", enterprise="E0001", user="U0002") == 200
    assert say(a, "add bread", team="T0044", enterprise="E0001", user="U0003") == 200
    assert len(fake.posts()) == posted
    assert stored_items(sessions, "T0043", ["U0002"]) == []


def test_a_team_uninstall_inside_an_org_leaves_the_org_wide_install(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    _, store, scheduler = world
    a = container(store, scheduler)
    install(a, "code-E0001-org")
    install(a, "code-T0005")  # a team-level install (the fake's team has no enterprise)
    assert say(a, "add milk", team="T0042", enterprise="E0001") == 200
    uninstall(a, team="T0005")
    installs = TableInstallationStore(Sessions(store).installations)
    assert installs.find_bot(enterprise_id=None, team_id="T0005") is None
    org = installs.find_bot(enterprise_id="E0001", team_id=None, is_enterprise_install=True)
    assert org is not None
    assert len(stored_items(Sessions(store), "T0042", ["U0001"])) == 1


def test_tokens_revoked_at_org_level_finds_the_orgs_bot(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    _, store, scheduler = world
    a = container(store, scheduler)
    install(a, "code-E0001-org")
    uninstall(
        a, team="T0042", enterprise="E0001", org=True, kind="tokens_revoked",
        tokens={"bot": ["UBOTE0001-"]},
    )  # fmt: skip
    installs = TableInstallationStore(Sessions(store).installations)
    assert (
        installs.find_bot(enterprise_id="E0001", team_id=None, is_enterprise_install=True) is None
    )


class Gate(TodoBot):
    """The todo bot whose turns on "slow ..." wait at a gate: a turn in flight while the
    workspace is uninstalled."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def turn(self, state: Any, message: Any) -> Any:
        if str(getattr(message, "text", "")).startswith("slow "):
            self.entered.set()
            assert self.release.wait(30)
        return super().turn(state, message)


def test_turns_in_flight_during_the_uninstall_leave_nothing(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    """A turn that loaded before the uninstall and commits after its erase: a new user's
    (its creation meets the closed stone) and a known user's (its item is gone, and the
    user's tombstone is newer than the event) alike store nothing and say nothing."""
    fake, store, scheduler = world
    gate = Gate()
    a = handlers.slack.build(from_env(), sessions=Sessions(store, scheduler=scheduler), bot=gate)
    b = container(store, scheduler)
    install(b, "code-T0001")
    assert say(a, "add milk", user="U0001") == 200
    posted = len(fake.posts())
    for user in ("U0001", "U0005"):
        gate.entered.clear()
        gate.release.clear()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(say, a, "slow add tea", user=user)
            assert gate.entered.wait(30)
            uninstall(b)  # acked, erased (the erase drained) while the turn waits
            gate.release.set()
            assert pending.result() == 200
        fake.used_codes.discard("code-T0001")
        install(b, "code-T0001")  # for the next round: installed again
    assert stored_items(Sessions(store), "T0001", ["U0001", "U0005"]) == []
    assert len(fake.posts()) == posted


class Refusing:
    """A deferral that cannot hand off (the async invoke failed), then can."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.refuse = 1

    def submit(self, job: Any) -> None:
        if self.refuse:
            self.refuse -= 1
            raise ConnectionError("the hand-off failed")
        self.inner.submit(job)

    def drain(self, timeout: float) -> bool:
        return bool(self.inner.drain(timeout=timeout))


def test_an_org_uninstall_whose_erase_cannot_be_handed_off_is_retried_whole(
    world: tuple[FakeSlack, Store, SQLiteScheduler],
) -> None:
    """Nothing is deleted before the erases are handed off: Slack's retry of the 503 finds
    the same teams of the org to erase."""
    _, store, scheduler = world
    a = container(store, scheduler)
    install(a, "code-E0001-org")
    assert say(a, "add milk", team="T0042", enterprise="E0001") == 200
    a.deferrer = Refusing(a.deferrer)
    body = dm_body("x")
    body.update(
        type="event_callback", team_id="T0042", enterprise_id="E0001",
        event={"type": "app_uninstalled", "event_ts": "1.1"}, event_id="EvORG1",
        authorizations=[{"enterprise_id": "E0001", "team_id": None,
                         "is_enterprise_install": True}],
    )  # fmt: skip
    assert a.handle(json_event(body))["statusCode"] == 503
    assert a.handle(json_event(body, retry=1))["statusCode"] == 200  # Slack's retry
    assert a.deferrer.drain(timeout=30)  # type: ignore[attr-defined]
    assert stored_items(Sessions(store), "T0042", ["U0001"]) == []
