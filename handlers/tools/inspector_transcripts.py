"""The inspector's transcripts (:mod:`handlers.tools.inspector`): ``GET
/_inspector/transcript``, a conversation's turns so far from the delivery journal as a
transcript (``bot.transcripts``); ``POST /_inspector/replay``, a transcript (the JSON object
itself, or ``{"id": name}``: ``<name>.json`` of the transcripts folder, never a path a request
names) replayed against the running bot, and where it differs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handlers.tools.journal import Journal

#: Where ``POST /_inspector/replay`` finds a transcript by id (git-ignored, beside the
#: development config).
TRANSCRIPTS = Path(".data/transcripts")
#: A transcript's id: a file name of the folder, never a path (no ``/``, no ``..``).
TRANSCRIPT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}(\.[A-Za-z0-9_-]{1,20})?")


def transcript(journal: Journal, who: tuple[str, str, str, str], *, name: str) -> Any:
    """The turns ``journal`` holds for one identity (``who``: platform, team, channel, user)
    that the bot ``name`` applied, as a transcript (``bot.transcripts``)."""
    from bot.spec import DEFAULT_BOT
    from bot.transcripts import Transcript, Turn

    platform, team, channel, user = who
    entries = journal.of(platform, team, channel, user if platform != "slack" else None)
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


def replay(data: Mapping[str, Any], *, folder: Path, bot: Any) -> dict[str, Any]:
    """Replay a transcript: the JSON object, or ``{"id": name}`` of the transcripts
    folder (a name, never a path: ``../x`` and ``/etc/x`` are refused)."""
    from bot.testing import replay
    from bot.transcripts import load

    source: Mapping[str, Any] | Path = data
    if set(data) == {"id"}:
        name = str(data["id"])
        if not TRANSCRIPT_ID.fullmatch(name):
            raise ValueError(f"a transcript id is a file name of {folder}/, not a path")
        found = folder / (name if name.endswith(".json") else f"{name}.json")
        if not found.is_file():
            raise ValueError(f"no transcript {name!r} in {folder}/")
        source = found
    transcript = load(source)
    differences = replay(bot, transcript)
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
