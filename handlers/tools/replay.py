"""Replay a saved transcript against the bot's current code (``make replay FILE=...``).

A transcript is a conversation recorded by ``make run``'s inspector (*Save transcript*); each
turn is run again, in order, from an empty store, and where the replies or the state now
differ is printed turn by turn. Exit 0 when nothing differs, 1 otherwise (a regression test:
``bot.testing.replay`` does the same inside a test), 2 when it cannot run.

The bot is the one the transcript was recorded with: the transcript names its class (``bot``)
and where it was loaded from (``source``, the ``BOT`` of the recording). ``BOT`` (or
``--bot``) overrides the source, but a bot of another class is refused, naming both: its
differences would say nothing about the recorded one.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make replay", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="the transcript (JSON)")
    parser.add_argument(
        "--bot",
        default=os.environ.get("BOT") or None,
        help="package.module:attribute (default: the transcript's own)",
    )
    args = parser.parse_args(argv)
    from bot.spec import DEFAULT_BOT
    from bot.testing import replay
    from bot.transcripts import TranscriptError, load
    from handlers.entry import load_bot, spec_of
    from handlers.settings import ConfigError

    try:
        transcript = load(args.file)
        reference = args.bot or transcript.source or DEFAULT_BOT
        the_bot = load_bot(reference)
    except (TranscriptError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = spec_of(the_bot).name
    if name != transcript.bot:
        recorded = transcript.bot + (f" (BOT={transcript.source})" if transcript.source else "")
        how = (
            f"BOT={transcript.source} (or no BOT)"
            if transcript.source
            else f"BOT set to {transcript.bot} (package.module:attribute)"
        )
        print(
            f"error: {args.file} was recorded with {recorded}, but BOT={reference} is {name}: "
            f"replay it with {how}",
            file=sys.stderr,
        )
        return 2
    differences = replay(the_bot, transcript)
    turns = len(transcript.turns)
    for difference in differences:
        print(difference)
    if differences:
        changed = len({d.turn for d in differences})
        print(f"{changed} of {turns} turns differ from the transcript ({name}, BOT={reference})")
        return 1
    print(
        f"{turns} turns replayed: the same replies and state as recorded ({name}, BOT={reference})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
