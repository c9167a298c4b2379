"""Records outside any conversation (a page's token, an installation, a one-time state), on
every store, clear and sealed: kept, replaced, expired, deleted, taken exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sessions import InvalidKeyError
from sessions.installations import SK, record_pk
from sessions.store import Store
from tests.contract.sealing import MODE, Sessions

TOKEN = "EAAG-page-token-1234567890"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_record_is_kept_replaced_and_deleted(store: Store) -> None:
    records = Sessions(store).installations
    assert records.get("messenger-page", "100") is None
    records.put("messenger-page", "100", {"token": TOKEN})
    records.put("messenger-page", "200", {"token": "other"})
    assert records.get("messenger-page", "100") == {"token": TOKEN}
    records.put("messenger-page", "100", {"token": TOKEN + "-new"})
    assert records.get("messenger-page", "100") == {"token": TOKEN + "-new"}
    assert records.delete("messenger-page", "100") is True
    assert records.delete("messenger-page", "100") is False
    assert records.get("messenger-page", "100") is None
    assert records.get("messenger-page", "200") == {"token": "other"}


def test_a_sealed_record_keeps_no_secret_in_clear(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    records = Sessions(store).installations
    records.put("messenger-page", "100", {"token": TOKEN})
    found = store.get_record(record_pk("messenger-page", "100"), SK)
    assert found is not None
    assert (TOKEN.encode() in found[0]) is (not MODE)  # sealed whenever encryption is on
    if MODE:  # bound to its own key: moved to another record, it does not open
        store.put_record(record_pk("messenger-page", "200"), SK, found[0], expires_at=found[1])
        # It would not open on any later read either: absent (logged by class), never an
        # error a webhook would answer 5xx on every redelivery.
        assert records.get("messenger-page", "200") is None
        assert "does not open (DecryptError)" in caplog.text


def test_a_record_expires_and_is_taken_once(store: Store) -> None:
    clock = Clock()
    records = Sessions(store, clock=clock).installations
    records.put("oauth-state", "s1", {"issued": 1}, ttl=600)
    records.put("oauth-state", "s2", {"issued": 2}, ttl=600)
    clock.now += 601
    assert records.get("oauth-state", "s1") is None
    assert records.take("oauth-state", "s1") is None  # expired: not valid, and gone

    clock.now -= 601
    with ThreadPoolExecutor(10) as pool:
        taken = list(pool.map(lambda _: records.take("oauth-state", "s2"), range(10)))
    assert [t for t in taken if t is not None] == [{"issued": 2}]  # one taker, once


@pytest.mark.parametrize(("kind", "ident"), [("Page", "1"), ("page", "1#2"), ("page", ""),
                                             ("page", "x" * 129), ("", "1")])  # fmt: skip
def test_record_keys_are_validated(store: Store, kind: Any, ident: Any) -> None:
    with pytest.raises(InvalidKeyError):
        Sessions(store).installations.put(kind, ident, {})


def test_a_record_is_created_by_one_of_racing_creators(store: Store) -> None:
    clock = Clock()
    records = Sessions(store, clock=clock).installations
    with ThreadPoolExecutor(10) as pool:
        won = list(pool.map(lambda n: records.create("lock", "T1", {"by": n}, ttl=30), range(10)))
    assert won.count(True) == 1
    assert records.create("lock", "T1", {"by": "late"}, ttl=30) is False
    clock.now += 31  # expired: the lock can be taken again
    assert records.create("lock", "T1", {"by": "later"}, ttl=30) is True
    assert records.get("lock", "T1") == {"by": "later"}
