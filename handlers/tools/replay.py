"""Replay a saved transcript against the bot's current code (``make replay FILE=...``).

A transcript is a conversation recorded by ``make run``'s inspector (*Save transcript*); each
turn is run again, in order, from an empty store, and where the replies or the state now
differ is printed turn by turn. Exit 0 when nothing differs, 1 otherwise (a regression test:
``bot.testing.replay`` does the same inside a test).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make replay", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="the transcript (JSON)")
    parser.add_argument(
        "--bot", default=os.environ.get("BOT") or None, help="package.module:attribute"
    )
    args = parser.parse_args(argv)
    import bot as bot_api
    from bot.testing import replay
    from bot.transcripts import TranscriptError, load
    from handlers.entry import load_bot
    from handlers.settings import ConfigError

    try:
        transcript = load(args.file)
        the_bot = load_bot(args.bot or bot_api.DEFAULT_BOT)
    except (TranscriptError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    differences = replay(the_bot, transcript)
    turns = len(transcript.turns)
    for difference in differences:
        print(difference)
    if differences:
        changed = len({d.turn for d in differences})
        print(f"{changed} of {turns} turns differ from the transcript")
        return 1
    print(f"{turns} turns replayed: the same replies and state as recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
