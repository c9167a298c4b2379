"""Slack installations kept as slack_sdk's own stores keep them (a bot record, the latest
installation, one per installing user, each a sealed record of its own), on every store,
clear and sealed: no record grows with the number of users, ``find_installation`` and
``find_bot`` agree after a rotation, one user's tokens are deleted alone, a save takes no lock,
and a workspace kept in the first one-record layout is read and rewritten on its first save."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from slack_sdk.oauth.installation_store.models.installation import Installation

from handlers.slack.installs import TEAM, TableInstallationStore
from sessions.installations import record_pk
from sessions.store import Store
from tests.contract.sealing import MODE, Sessions


def installation(
    user: str,
    *,
    team: str = "T0001",
    bot_token: str = "xoxb-1",  # noqa: S107
    refresh: str | None = None,
) -> Installation:
    return Installation(
        app_id="A0APP",
        team_id=team,
        team_name="Team",
        bot_token=bot_token,
        bot_id="B0001",
        bot_user_id="U0BOT",
        bot_scopes="commands,chat:write",
        bot_refresh_token=refresh,
        bot_token_expires_at=int(time.time()) + 43_200 if refresh else None,
        user_id=user,
        user_token=f"xoxp-{user}",
        user_scopes="search:read",
        installed_at=time.time(),
    )


def installs(store: Store) -> TableInstallationStore:
    return TableInstallationStore(Sessions(store).installations)


def test_each_part_is_a_record_of_its_own(store: Store) -> None:
    found = installs(store)
    found.save(installation("U0001"))
    found.save(installation("U0002"))
    assert store.record_parts(record_pk(TEAM, "none-T0001")) == [
        "bot",
        "latest",
        "user#U0001",
        "user#U0002",
    ]
    latest = found.find_installation(enterprise_id=None, team_id="T0001")
    assert latest is not None and latest.user_id == "U0002"
    first = found.find_installation(enterprise_id=None, team_id="T0001", user_id="U0001")
    assert first is not None and first.user_token == "xoxp-U0001"
    assert found.find_installation(enterprise_id=None, team_id="T0001", user_id="U0009") is None
    bot = found.find_bot(enterprise_id=None, team_id="T0001")
    assert bot is not None and bot.bot_token == "xoxb-1"
    if MODE:  # sealed: no token in clear in any part
        for part in store.record_parts(record_pk(TEAM, "none-T0001")):
            blob = store.get_record(record_pk(TEAM, "none-T0001"), part)
            assert blob is not None and b"xox" not in blob[0]


def test_find_installation_and_find_bot_agree_after_a_rotation(store: Store) -> None:
    """Bolt's ``authorize`` calls ``find_installation()`` with no user: after a rotation it
    must get the new bot and refresh tokens, as ``find_bot`` does."""
    found = installs(store)
    found.save(installation("U0001", bot_token="xoxe.xoxb-old", refresh="xoxe-1-old"))
    found.save(installation("U0002", bot_token="xoxe.xoxb-old", refresh="xoxe-1-old"))
    bot = found.find_bot(enterprise_id=None, team_id="T0001")
    assert bot is not None
    bot.bot_token, bot.bot_refresh_token = "xoxe.xoxb-new", "xoxe-1-new"
    bot.bot_token_expires_at = int(time.time()) + 43_200
    found.save_bot(bot)
    other = installs(store)  # another container
    after = other.find_bot(enterprise_id=None, team_id="T0001")
    assert after is not None and after.bot_token == "xoxe.xoxb-new"
    for user in (None, "U0001", "U0002"):
        got = other.find_installation(enterprise_id=None, team_id="T0001", user_id=user)
        assert got is not None, user
        assert (got.bot_token, got.bot_refresh_token) == ("xoxe.xoxb-new", "xoxe-1-new"), user
        assert got.bot_token_expires_at == after.bot_token_expires_at
    latest = other.find_installation(enterprise_id=None, team_id="T0001")
    assert latest is not None and latest.user_token == "xoxp-U0002"  # the user part kept


def test_deleting_one_users_installation_keeps_the_others(store: Store) -> None:
    found = installs(store)
    for user in ("U0001", "U0002", "U0003"):
        found.save(installation(user))
    found.delete_installation(enterprise_id=None, team_id="T0001", user_id="U0002")
    assert found.find_installation(enterprise_id=None, team_id="T0001", user_id="U0002") is None
    for user in ("U0001", "U0003"):
        got = found.find_installation(enterprise_id=None, team_id="T0001", user_id=user)
        assert got is not None and got.user_token == f"xoxp-{user}"
    # The latest's user goes: the latest keeps the bot, without that user's tokens.
    found.delete_installation(enterprise_id=None, team_id="T0001", user_id="U0003")
    latest = found.find_installation(enterprise_id=None, team_id="T0001")
    assert latest is not None and latest.bot_token == "xoxb-1" and latest.user_token is None
    assert found.find_bot(enterprise_id=None, team_id="T0001") is not None
    found.delete_all(enterprise_id=None, team_id="T0001")
    assert store.record_parts(record_pk(TEAM, "none-T0001")) == []


def test_a_save_takes_no_lock_and_removes_no_record_it_did_not_write(store: Store) -> None:
    """The first layout's save waited up to 5 s for a lock record and then deleted it, held
    or not: a save touches only its own records now."""
    records = Sessions(store).installations
    records.create("slack-team-lock", "none-T0001", {"by": "someone else"}, ttl=60)
    found = installs(store)
    found.save(installation("U0001"))
    assert records.get("slack-team-lock", "none-T0001") == {"by": "someone else"}


def test_a_one_record_installation_is_read_and_rewritten_on_its_first_save(store: Store) -> None:
    records = Sessions(store).installations
    old = {
        "bot": dict(installation("U0001").to_bot().__dict__),
        "users": {u: dict(installation(u).__dict__) for u in ("U0001", "U0002")},
        "latest": "U0002",
    }
    records.put(TEAM, "none-T0001", old)  # the first layout: one record, sk "install"
    found = installs(store)
    bot = found.find_bot(enterprise_id=None, team_id="T0001")
    assert bot is not None and bot.bot_token == "xoxb-1"
    latest = found.find_installation(enterprise_id=None, team_id="T0001")
    assert latest is not None and latest.user_id == "U0002"
    first = found.find_installation(enterprise_id=None, team_id="T0001", user_id="U0001")
    assert first is not None and first.user_token == "xoxp-U0001"

    found.save(installation("U0003", bot_token="xoxb-2"))
    assert store.record_parts(record_pk(TEAM, "none-T0001")) == [
        "bot",
        "latest",
        "user#U0001",
        "user#U0002",
        "user#U0003",
    ]
    for user in ("U0001", "U0002", "U0003"):
        got = found.find_installation(enterprise_id=None, team_id="T0001", user_id=user)
        assert got is not None and got.user_token == f"xoxp-{user}"
        assert got.bot_token == "xoxb-2"  # the workspace's current bot
    latest = found.find_installation(enterprise_id=None, team_id="T0001")
    assert latest is not None and latest.user_id == "U0003"


def test_an_org_wide_install_is_its_own_record(store: Store) -> None:
    found = installs(store)
    org = installation("U0001", team="T0042")
    org.enterprise_id, org.is_enterprise_install, org.team_id = "E0001", True, None
    found.save(org)
    got = found.find_installation(
        enterprise_id="E0001", team_id="T0042", is_enterprise_install=True
    )
    assert got is not None and got.is_enterprise_install and got.enterprise_id == "E0001"
    bot = found.find_bot(enterprise_id="E0001", team_id=None, is_enterprise_install=True)
    assert bot is not None and bot.bot_token == "xoxb-1"
    assert found.find_bot(enterprise_id="E0001", team_id="T0042") is None
    assert store.record_parts(record_pk(TEAM, "E0001-none"))[:2] == ["bot", "latest"]


def test_five_thousand_installing_users_keep_every_record_small(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """The first layout kept every user in one record (about 86 bytes a user, past DynamoDB's
    400 KB at about 4,700 users): now no record grows with the number of users. 5,000 users
    on SQLite; on DynamoDB Local 1,000 (5,000 with ``INSTALL_USERS=5000``, as ``make
    test-long`` runs it: four minutes on a shared machine)."""
    engine = request.node.callspec.params["store"]
    if not MODE or engine == "moto":
        pytest.skip("sealed (the larger form), on SQLite and DynamoDB Local")
    users = 5000 if engine == "sqlite" else int(os.environ.get("INSTALL_USERS", "1000"))
    found = installs(store)
    names = [f"U{n:06d}" for n in range(users)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda u: found.save(installation(u)), names))
    pk = record_pk(TEAM, "none-T0001")
    parts = store.record_parts(pk)
    assert len(parts) == users + 2
    sizes: list[int] = []
    for part in parts:
        got = store.get_record(pk, part)
        assert got is not None
        sizes.append(len(got[0]))
    assert max(sizes) < 4096, max(sizes)

    def right(user: str) -> bool:
        got = found.find_installation(enterprise_id=None, team_id="T0001", user_id=user)
        return got is not None and got.user_id == user and got.user_token == f"xoxp-{user}"

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(right, names))
