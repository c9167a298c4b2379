"""A streamed answer's chain of records (``handlers.pipeline.streams``) on every store: appends are
buffered and recorded before they go, a resumed run appends only what is missing (or, when
its text differs, a blank line and all of it), and of two runs at once one writes each
record: the other stops."""

from __future__ import annotations

import pytest

from handlers.pipeline.streams import CALL_CHARS, Superseded, Writer, read_progress
from sessions import ConversationKey
from sessions.store import Store
from tests.contract.sealing import Sessions

KEY = ConversationKey.slack(team="T0001", channel="D0001", user="U0001")
EFFECT = "fx-0123456789abcdef"


class Target:
    """A platform that shows a growing message: every call."""

    whole = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def open(self) -> str:
        self.calls.append(("start", ""))
        return "1700000000.000100"

    def append(self, ref: str, text: str) -> None:
        self.calls.append(("append", text))

    def stop(self, ref: str, text: str) -> None:
        self.calls.append(("stop", text))

    @property
    def shown(self) -> str:
        return "".join(t for _, t in self.calls)


def writer(store: Store, target: Target, done: list[tuple[int, str]], **kw: object) -> Writer:
    return Writer(
        sessions=Sessions(store), target=target, ref="ts", effect_key=EFFECT, done=done,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def opened(store: Store) -> None:
    """What the runner does before the first append: the stream's ts, claimed."""
    assert Sessions(store).claim(KEY, "effect:x#ts", event_time=None, payload={"ts": "ts"})


def run(w: Writer, pieces: list[str], tail: str = "") -> None:
    for piece in pieces:
        w.add(piece)
    w.target.stop(w.ref, w.finish(tail))


def test_appends_are_buffered_and_the_first_text_goes_at_once(store: Store) -> None:
    target = Target()
    w = writer(store, target, [], buffer_chars=10, buffer_seconds=3600)
    run(w, ["Hi", " there", ", how", " are", " you", " today?"])
    # The first chunk at once (time to first text), then 10 characters at a time.
    assert target.calls == [
        ("append", "Hi"),
        ("append", " there, how"),
        ("append", " are you today?"),
        ("stop", ""),
    ]
    assert w.text == target.shown == "Hi there, how are you today?"


def test_a_call_never_carries_more_than_slack_takes(store: Store) -> None:
    target = Target()
    w = writer(store, target, [], buffer_chars=10**6, buffer_seconds=3600)
    text = "x" * (CALL_CHARS * 2 + 5)
    run(w, ["a", text])
    assert max(len(t) for _, t in target.calls) <= CALL_CHARS
    assert target.shown == "a" + text


def test_a_resumed_run_appends_only_what_is_missing(store: Store) -> None:
    opened(store)
    first = Target()
    w = writer(store, first, [], buffer_chars=1)
    for piece in ["one ", "two ", "three "]:
        w.add(piece)  # then the run dies: no stop
    progress = read_progress(Sessions(store), KEY, "effect:x", EFFECT)
    assert progress.ts == "ts" and [n for n, _ in progress.appends] == [4, 8, 14]
    second = Target()
    run(writer(store, second, progress.appends, buffer_chars=1), ["one ", "two ", "three ", "four"])
    assert first.shown + second.shown == "one two three four"


def test_a_resumed_run_whose_text_differs_appends_a_blank_line_and_all_of_it(
    store: Store,
) -> None:
    opened(store)
    first = Target()
    w = writer(store, first, [], buffer_chars=1)
    for piece in ["one ", "two "]:
        w.add(piece)
    progress = read_progress(Sessions(store), KEY, "effect:x", EFFECT)
    second = Target()
    run(writer(store, second, progress.appends, buffer_chars=1), ["uno ", "dos ", "tres"])
    assert first.shown + second.shown == "one two \n\nuno dos tres"


@pytest.mark.parametrize("ahead", [False, True])
def test_of_two_runs_at_once_each_record_has_one_writer(store: Store, ahead: bool) -> None:
    a, b = Target(), Target()
    wa = writer(store, a, [], buffer_chars=1)
    wb = writer(store, b, [], buffer_chars=1)
    wa.add("one ")
    if ahead:
        wa.add("two ")
    with pytest.raises(Superseded):
        wb.add("uno ")  # its first record is taken
        wb.add("dos ")
        wb.add("tres ")
    assert b.calls == []  # nothing of the loser went out
