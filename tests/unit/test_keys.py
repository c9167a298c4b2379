from __future__ import annotations

import pytest

from sessions import ConversationKey, InvalidKeyError, UserKey
from sessions.keys import TOMBSTONE_SK


def test_slack_key_layout() -> None:
    key = ConversationKey.slack(team="T0001", channel="C0002", user="U0003", enterprise="E0004")
    assert key.pk == "slack#T0001#U0003"
    assert key.sk == "C0002"
    assert key.user_key == UserKey("slack", "T0001", "U0003")
    assert key.event_sk("Ev123").startswith("C0002#evt#")


def test_messenger_key_layout() -> None:
    key = ConversationKey.messenger(page="1234567890", psid="9876543210")
    assert key.pk == "messenger#1234567890#9876543210"
    assert key.sk == "1234567890"


def test_event_sort_key_is_fixed_size_and_distinct() -> None:
    key = ConversationKey.slack(team="T1", channel="C1", user="U1")
    long_mid = "m_" + "A" * 200
    assert len(key.event_sk(long_mid)) == len(key.event_sk("x"))
    assert key.event_sk("a") != key.event_sk("b")
    assert key.event_sk("a") != TOMBSTONE_SK


@pytest.mark.parametrize(
    "build",
    [
        lambda: ConversationKey.slack(team="T1#", channel="C1", user="U1"),
        lambda: ConversationKey.slack(team="T1", channel="C1", user=""),
        lambda: ConversationKey.slack(team="T1", channel="C1", user="U" * 500),
        lambda: ConversationKey.slack(team="T1", channel="C1 ", user="U1"),
        lambda: ConversationKey.slack(team="T1", channel="C1", user="U1", enterprise="e1"),
        lambda: ConversationKey.messenger(page="12a", psid="1"),
        lambda: ConversationKey.messenger(page="1", psid="١٢٣"),  # Arabic-Indic digits
        lambda: ConversationKey("telegram", "1", "1", "1"),  # type: ignore[arg-type]
        lambda: ConversationKey("messenger", "1", "1", "1", enterprise="1"),
        lambda: ConversationKey.slack(team=None, channel="C1", user="U1"),  # type: ignore[arg-type]
    ],
)
def test_invalid_components_are_rejected(build: object) -> None:
    with pytest.raises(InvalidKeyError):
        build()  # type: ignore[operator]


def test_invalid_idempotency_keys() -> None:
    key = ConversationKey.slack(team="T1", channel="C1", user="U1")
    with pytest.raises(InvalidKeyError):
        key.event_sk("")
    with pytest.raises(InvalidKeyError):
        key.event_sk("x" * 1025)


def test_user_key_round_trips_through_pk() -> None:
    user = UserKey("messenger", "123", "456")
    assert UserKey.from_pk(user.pk) == user
    for bad in ["slack#T1", "slack#T1#U1#x", "nope#1#2", "slack#t1#U1"]:
        with pytest.raises(InvalidKeyError):
            UserKey.from_pk(bad)


def test_invalid_key_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid slack channel"):
        ConversationKey.slack(team="T1", channel="#general", user="U1")
