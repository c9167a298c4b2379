"""``make run``'s delivery journal kept in a file beside the store, so that it outlives a
restart as the conversations it describes do: a transcript saved after a restart holds the
turns from before it too (the inspector's *Save transcript*, ``GET /_inspector/transcript``).

:func:`keep_on_disk` gives a journal (``handlers.tools.inspector``) a list of entries that
also appends each entry, as one JSON line, to the file, marked with the bot that ran it (a
transcript holds only the running bot's turns); the file is read back at start, its last
``keep`` entries kept, and rewritten with those once it holds twice as many lines. Local
only, never in the deploy; the file is as private as the store beside it (``.data/``,
git-ignored).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, SupportsIndex


def journal_file(sessions_db: str, sessions_table: str | None) -> Path | None:
    """Where ``make run`` keeps its journal: beside the store it runs on (the SQLite file's
    ``.journal.jsonl``; ``.data/journal-<table>.jsonl`` for a DynamoDB table); none for an
    in-memory store."""
    if sessions_table:
        return Path(".data") / f"journal-{sessions_table}.jsonl"
    if not sessions_db or sessions_db == ":memory:":
        return None
    return Path(sessions_db).with_suffix(".journal.jsonl")


class KeptEntries(list[dict[str, Any]]):
    """A journal's entries that are also lines of ``path``."""

    def __init__(self, path: Path, *, bot: str, keep: int) -> None:
        super().__init__()
        self.path, self.bot, self.keep = path, bot, keep
        self._lock = threading.Lock()
        self._lines = 0
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    super().append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a crash
            self._lines = len(self)
            del self[:-keep]

    @property
    def last_seq(self) -> int:
        return max((int(e.get("seq") or 0) for e in self), default=0)

    def append(self, entry: dict[str, Any]) -> None:
        entry.setdefault("bot", self.bot)
        super().append(entry)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._lines >= 2 * self.keep:
                kept = list(self)[-self.keep :]
                text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in kept)
                self.path.write_text(text, encoding="utf-8")
                self._lines = len(kept)
                return
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._lines += 1

    def extend(self, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
            self.append(entry)

    def insert(self, index: SupportsIndex, entry: dict[str, Any]) -> None:
        raise TypeError("a journal only grows at its end")


def keep_on_disk(journal: Any, path: Path | None, *, bot: str, keep: int) -> None:
    """Make ``journal`` (its ``entries`` list and its ``_seq`` counter) last in ``path``."""
    if path is None:
        return
    entries = KeptEntries(path, bot=bot, keep=keep)
    journal.entries = entries
    journal._seq = entries.last_seq


__all__ = ["KeptEntries", "journal_file", "keep_on_disk"]
