"""Sessions admin: list, show, export and delete a user's records, and create the table.

    python -m handlers.tools.admin list slack#T0001#U0001
    python -m handlers.tools.admin show slack#T0001#U0001 todo:D0001   # or D0001 (BOT's)
    python -m handlers.tools.admin export messenger#100200300#5550001 -o user.json
    python -m handlers.tools.admin delete slack#T0001#U0001 [--yes]
    python -m handlers.tools.admin dead-letters slack#T0001#U0001
    python -m handlers.tools.admin retry slack#T0001#U0001 todo:D0001#evt#<hash>
    python -m handlers.tools.admin dead-letters slack#T0001#C0001#channel
    python -m handlers.tools.admin create-table [--table sessions]
    python -m handlers.tools.admin erase-workspace slack#T0001 [--yes]
    python -m handlers.tools.admin add-page 100200300 [--instagram | --whatsapp] < token.txt
    python -m handlers.tools.admin remove-page 100200300 [--instagram | --whatsapp]

The store is the one the environment selects (``SESSIONS_TABLE`` + ``AWS_ENDPOINT_URL_DYNAMODB``
for DynamoDB, else ``SESSIONS_DB``); ``--table``/``--db`` override it. A user is named by their
partition key, ``<platform>#<workspace or page>#<user>``; a Slack channel's shared state (a
bot with ``scope = "channel"``) by its own, ``slack#<team>#<channel>#channel``: list, show,
export, dead-letters and retry take either; delete only a user (``delete`` runs the forget
turn of each bot whose channel state the user wrote to, on each such channel, then deletes
the user: the configured ``BOT`` for its own namespace, else the bot recorded with the user's
membership marks; when that bot does not load here, the delete refuses, naming it, and deletes
nothing).

``retry`` replays a dead letter in this process through the platform's edge, built from the
environment as the Lambda builds it (``BOT``, the platform's secrets and API URLs; locally,
``make admin`` reads the development config ``.data/local.env``). A replay that fails again
is recorded again and says so. A dead letter belongs to the bot whose namespace leads its
sort key: under a ``BOT`` of another namespace, ``retry`` refuses, naming both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, TextIO

from bot.spec import BotSpec
from handlers.settings import ConfigError, from_env
from handlers.store import sessions_from_settings
from sessions import SessionError, Sessions, UserKey, codec
from sessions.keys import (
    NS_SEP,
    ChannelKey,
    Partition,
    conversation_from_item,
    partition_from_pk,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage plus a message
        self.exit(2, f"error: {message} (see --help)\n")


#: How long a turn in flight during a delete may still write: the deploy's function timeout
#: (60 s), and a margin.
DELETE_SETTLE = 65.0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m handlers.tools.admin", description=__doc__.split("\n")[0])
    parser.add_argument("--table", help="DynamoDB table (default: SESSIONS_TABLE)")
    parser.add_argument("--db", help="SQLite file (default: SESSIONS_DB)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="a user's conversations").add_argument("user")
    show = sub.add_parser("show", help="one conversation's state")
    show.add_argument("user")
    show.add_argument(
        "channel",
        help="the conversation as list prints it: the bot's namespace and the channel "
        "(todo:C0001; on Messenger todo:<page id>), or the bare channel id (C0001: in the "
        "namespace of the bot BOT names, else the one conversation stored for that channel)",
    )
    export = sub.add_parser("export", help="everything stored for a user, as JSON")
    export.add_argument("user")
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    delete = sub.add_parser("delete", help="delete everything stored for a user")
    delete.add_argument("user")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds to wait before deleting again what turns in flight wrote meanwhile "
        f"(default: SESSIONS_DELETE_SETTLE, else {DELETE_SETTLE:g} on DynamoDB: the "
        "functions' timeout; 0 on SQLite)",
    )
    sub.add_parser("dead-letters", help="a user's dead letters").add_argument("user")
    retry = sub.add_parser("retry", help="replay one dead letter through the bot")
    retry.add_argument("user")
    retry.add_argument("event", help="the dead letter's sort key, as dead-letters lists it")
    sub.add_parser("create-table", help="create the DynamoDB table (schema of serverless.yml)")
    erase = sub.add_parser("erase-workspace", help="delete everything a workspace stored")
    erase.add_argument("workspace", help="<platform>#<workspace>, e.g. slack#T0001")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for name, what in (("add-page", "keep a page's access token (read from standard input)"),
                       ("remove-page", "forget a page's access token")):  # fmt: skip
        page = sub.add_parser(name, help=what)
        page.add_argument(
            "page",
            help="the Facebook Page id (the Instagram account id, the WhatsApp phone number id)",
        )
        which = page.add_mutually_exclusive_group()
        which.add_argument(
            "--instagram", action="store_true", help="an Instagram professional account's token"
        )
        which.add_argument(
            "--whatsapp", action="store_true", help="a WhatsApp business phone number's token"
        )
    return parser


def main(argv: list[str] | None = None, *, stdin: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    if args.table:
        env["SESSIONS_TABLE"] = args.table
    if args.db:
        env["SESSIONS_DB"] = args.db
        env.pop("SESSIONS_TABLE", None)
    settings = from_env(env)
    if args.command == "erase-workspace":
        args.settle = None
    if args.command in ("delete", "erase-workspace") and args.settle is None:
        # On DynamoDB, the deployed functions' turns may be in flight; locally (SQLite) only
        # the local server's, which end in milliseconds.
        default = DELETE_SETTLE if settings.sessions_table else 0.0
        args.settle = float(env.get("SESSIONS_DELETE_SETTLE") or default)
    try:
        if args.command == "create-table":
            if not settings.sessions_table:
                raise SessionError("create-table needs --table or SESSIONS_TABLE")
            from sessions.dynamodb import create_table, make_client

            create_table(make_client(), settings.sessions_table)
            print(f"table {settings.sessions_table} is ready (pk/sk, TTL on expires_at)")
            return 0
        if not settings.sessions_table and not Path(settings.sessions_db).is_file():
            # Opening it would create an empty database and answer "nothing stored".
            raise SessionError(
                f"SESSIONS_DB={settings.sessions_db!r} does not exist (set SESSIONS_TABLE "
                "for DynamoDB, or --db for another file)"
            )
        sessions = sessions_from_settings(settings)
        if args.command in ("add-page", "remove-page"):
            return _page(args, sessions, stdin or sys.stdin)
        if args.command == "erase-workspace":
            return _erase(args, sessions, stdin or sys.stdin)
        user = partition_from_pk(args.user)
        return _run(args, sessions, user, stdin or sys.stdin)
    except (SessionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # botocore's credential/endpoint errors, among others
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _run(args: Any, sessions: Sessions, user: Partition, stdin: TextIO) -> int:
    if args.command == "list":
        conversations = sessions.conversations(user)
        for c in conversations:
            times = f"updated {_date(c.updated_at)}\texpires {_date(c.expires_at)}"
            print(f"{c.key.sk}\tversion {c.version}\t{times}")
        if not conversations:
            print(f"no conversations stored for {user.pk}")
        return 0
    if args.command == "show":
        found = _conversation(sessions, user, args.channel)
        if isinstance(found, str):
            print(f"error: {found}", file=sys.stderr)
            return 1
        key, conversation = found
        print(
            json.dumps(
                {
                    "key": f"{key.pk} / {key.sk}",
                    "version": conversation.version,
                    "state": conversation.state,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return 0
    if args.command == "dead-letters":
        unopened: list[str] = []
        letters = sessions.dead_letters(user, unopened=unopened)
        cannot = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in unopened}
        for sk, letter in letters:
            when = _date(letter.committed_at)
            if sk in cannot:
                replay = f"cannot open its payload ({cannot[sk]})"
            else:
                replay = "replayable" if letter.payload else "no replay payload"
            print(f"{sk}\t{when}\t{replay}\t{letter.error}")
        if not letters:
            print(f"no dead letters for {user.pk}")
        return 0
    if args.command == "retry":
        return _retry(sessions, user, args.event)
    if args.command == "export":
        text = json.dumps(sessions.export(user), indent=2, ensure_ascii=False)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text + "\n")
            print(f"exported {user.pk} to {args.output}")
        else:
            print(text)
        return 0
    # delete
    if isinstance(user, ChannelKey):
        print(
            "error: a channel's state is everyone's, not a user's: delete its users (each "
            "user's delete runs the bot's forget turn on it)",
            file=sys.stderr,
        )
        return 1
    try:
        specs = _forgetters(sessions, user)
    except _Refused as exc:
        print(f"error: {exc}; nothing deleted", file=sys.stderr)
        return 1
    if not args.yes and not _confirmed(stdin, f"Delete everything stored for {user.pk}", user.pk):
        return 1
    settle = args.settle
    if settle > 0:
        print(f"deleting; then, in {settle:g} s, again what turns in flight wrote meanwhile")
        sys.stdout.flush()
    forgotten, failed = _forget(sessions, user, specs)
    if forgotten or failed:
        print(f"the bot forgot the user on {forgotten} channel(s); {failed} failed (dead letters)")
    if failed:
        # Deleting now would delete the marks that find those channels: the user's data
        # there would stay, unreachable. Nothing of the user is deleted; run it again.
        print(
            f"error: the bot's forget turn failed on {failed} channel(s) (a dead letter on "
            "each); nothing of the user deleted: fix the bot and run the delete again",
            file=sys.stderr,
        )
        return 1
    if user.platform == "whatsapp":
        # WhatsApp redelivers for up to 7 days: the tombstone outlives its last redelivery
        # (as the adapter's event records do), or a late one would bring the user back.
        from handlers.whatsapp.config import RECORD_TTL

        sessions.tombstone_ttl = max(sessions.tombstone_ttl, RECORD_TTL + 3600)
    deleted = sessions.delete_user(user, settle=settle)
    print(f"deleted {deleted} items for {user.pk} (a tombstone blocks late redeliveries)")
    return 0


def _page(args: Any, sessions: Sessions, stdin: TextIO) -> int:
    """Keep or forget one page's (or Instagram account's) access token, sealed like every
    stored value. The token is read from standard input, never from the command line (which
    shell histories and process lists keep)."""
    from handlers.messenger.tokens import KINDS
    from handlers.whatsapp.tokens import KIND as WHATSAPP_KIND

    platform = "instagram" if args.instagram else "whatsapp" if args.whatsapp else "messenger"
    kind = WHATSAPP_KIND if args.whatsapp else KINDS[platform]
    if args.command == "remove-page":
        removed = sessions.installations.delete(kind, args.page)
        print(f"{platform} {args.page}: token {'removed' if removed else 'not found'}")
        return 0 if removed else 1
    if stdin.isatty():
        import getpass

        token = getpass.getpass(f"Access token of {platform} {args.page} (not echoed): ")
    else:
        token = stdin.readline()
    token = token.strip()
    if not token:
        print("error: no token on standard input; nothing stored", file=sys.stderr)
        return 2
    sessions.installations.put(kind, args.page, {"token": token})
    print(f"{platform} {args.page}: token kept (answers its messages within 5 minutes)")
    return 0


def _confirmed(stdin: TextIO, question: str, answer: str) -> bool:
    """Ask ``question``; whether the operator typed ``answer`` back (else says so)."""
    print(f"{question}? Type {answer} to confirm: ", end="")
    sys.stdout.flush()
    if stdin.readline().strip() == answer:
        return True
    print("error: not confirmed; nothing deleted", file=sys.stderr)
    return False


def _erase(args: Any, sessions: Sessions, stdin: TextIO) -> int:
    """Every partition of a workspace's users and channels, each deleted as a user delete is
    (a tombstone: nothing comes back with a late event), found by the workspace's index."""
    platform, _, workspace = str(args.workspace).partition("#")
    partition_from_pk(f"{platform}#{workspace}#0")  # validates both (InvalidKeyError: exit 2)
    what = f"Erase everything stored for {args.workspace}"
    if not args.yes and not _confirmed(stdin, what, args.workspace):
        return 1
    deleted = sessions.erase_workspace(platform, workspace, settle=args.settle or 0.0)
    print(f"erased {args.workspace}: {deleted} items deleted (tombstones block late events)")
    return 0


class _Refused(Exception):
    """The delete cannot run a forget turn it needs: nothing is deleted."""


def _forgetters(sessions: Sessions, user: UserKey) -> list[BotSpec]:
    """The bots whose forget turn the user's delete must run: one per namespace of the
    channel states the user wrote to (their membership marks), each the configured ``BOT``
    when its namespace is that one, else the bot the marks recorded.

    Raises:
        _Refused: a namespace whose bot cannot be found or loaded (the message names the
            namespace and the bot module it needs), so the delete does not report success
            while the user's contributions stay in a channel's state.
    """
    from bot.spec import DEFAULT_BOT
    from handlers.entry import load_bot, spec_of
    from handlers.pipeline.membership import marks
    from handlers.settings import ConfigError

    found = marks(sessions, user)
    if not found:
        return []
    configured_ref = os.environ.get("BOT") or DEFAULT_BOT
    configured = spec_of(load_bot(configured_ref))
    specs = []
    for namespace, recorded in sorted(found.items(), key=lambda kv: str(kv[0])):
        if namespace == configured.namespace and _shares(configured):
            specs.append(configured)
            continue
        refs = sorted(r for r in recorded if r is not None)
        what = f"namespace {namespace!r}" if namespace else "the bot without a namespace"
        if not refs:
            raise _Refused(
                f"the user wrote to channel states of {what}, whose bot is not recorded with "
                f"their marks; run the delete with BOT=<module:attribute> of that bot"
            )
        try:
            spec = spec_of(load_bot(refs[0]))
        except ConfigError as exc:
            raise _Refused(
                f"the user wrote to channel states of {what}, kept by the bot {refs[0]}, "
                f"which does not load here ({exc}); run the delete where it does, with "
                f"BOT={refs[0]}"
            ) from exc
        if spec.namespace != namespace or not _shares(spec):
            raise _Refused(
                f"the bot {refs[0]} recorded for {what} keeps no channel state of that "
                f"namespace now; run the delete with BOT=<module:attribute> of that bot"
            )
        specs.append(spec)
    return specs


def _shares(spec: BotSpec) -> bool:
    """Whether the bot keeps a Slack channel's or thread's shared state."""
    return "channel" in spec.scopes or "thread" in spec.scopes


def _forget(sessions: Sessions, user: UserKey, specs: list[BotSpec]) -> tuple[int, int]:
    """Each bot's forget turn on each Slack channel whose shared state the user wrote to,
    before the user's own items go (``handlers.pipeline.membership``)."""
    from handlers.pipeline import bot_turn
    from handlers.pipeline.membership import Membership

    done = failed = 0
    for spec in specs:
        one, other = Membership(sessions, spec).forget(user, turn=bot_turn(spec))
        done, failed = done + one, failed + other
    return done, failed


def _configured_bot() -> tuple[str, Any]:
    """``BOT`` (else the default bot) and its declarations, as the functions load it."""
    from bot.spec import DEFAULT_BOT
    from handlers.entry import load_bot, spec_of

    reference = os.environ.get("BOT") or DEFAULT_BOT
    return reference, spec_of(load_bot(reference))


def _conversation(sessions: Sessions, user: Partition, channel: str) -> Any:
    """The key and stored conversation ``show`` names: a sort key as ``list`` prints it
    (``todo:D0001``), or a bare channel (``D0001``), found in the namespace of the bot
    ``BOT`` names (the todo bot's, ``todo``, by default), else the one stored conversation of
    that channel. A string: why there is none."""
    key = conversation_from_item(user.pk, channel)
    candidates = [key]
    if NS_SEP not in channel:
        try:
            namespace = _configured_bot()[1].namespace
        except ConfigError:
            namespace = None
        if namespace is not None:
            candidates.insert(0, conversation_from_item(user.pk, f"{namespace}{NS_SEP}{channel}"))
    for candidate in candidates:
        conversation = sessions.get(candidate)
        if conversation is not None:
            return candidate, conversation
    if NS_SEP not in channel:
        others = [c for c in sessions.conversations(user) if c.key.sk.endswith(NS_SEP + channel)]
        if len(others) == 1:
            return others[0].key, sessions.get(others[0].key)
        if others:
            listed = ", ".join(c.key.sk for c in others)
            return f"{user.pk} / {channel} is stored by several bots ({listed}): name one"
    return f"no conversation {user.pk} / {channel}"


def _retry(sessions: Sessions, user: Partition, event_sk: str) -> int:
    letter = dict(sessions.dead_letters(user)).get(event_sk)
    if letter is None:
        print(f"error: no dead letter {event_sk} for {user.pk}", file=sys.stderr)
        return 1
    if letter.payload is None:
        print(f"error: {event_sk} was recorded without a replay payload", file=sys.stderr)
        return 1
    # The dead letter is the item of one bot (its namespace leads its sort key): another bot
    # would run the event on items of its own and leave this one failed.
    item = event_sk.split("#", 1)[0]
    recorded = item.split(NS_SEP, 1)[0] if NS_SEP in item else None
    reference, spec = _configured_bot()
    if spec.namespace != recorded:
        print(
            f"error: {event_sk} is a dead letter of the bot whose namespace is "
            f"{recorded or '(none)'}, but BOT={reference} is {spec.name} (namespace "
            f"{spec.namespace or '(none)'}): retry with BOT set to the bot that recorded it",
            file=sys.stderr,
        )
        return 1
    job = dict(codec.decode(letter.payload), retry_failed=True)
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        from handlers.tools.local import prepare_environment, running_port

        # With no secrets in the environment: the development config of `make run`, replies
        # to its fake Slack/Graph routes (sent if the local server is running, else logged),
        # on the port it noted (PORT wins; 3000 when no server is running).
        prepare_environment(int(os.environ.get("PORT") or running_port() or 3000))
    if user.platform == "slack":
        from handlers.slack import build as build_slack

        build_slack(sessions=sessions).run_deferred(job)
    else:
        from handlers.messenger import build as build_messenger

        build_messenger(sessions=sessions).run_deferred(job)
    again = dict(sessions.dead_letters(user)).get(event_sk)
    if again is not None:
        print(f"error: the replay failed again: {again.error}", file=sys.stderr)
        return 1
    print(f"replayed {event_sk} for {user.pk}")
    return 0


def _date(epoch: int) -> str:
    """An epoch time as a UTC date, as the admin tools show times."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


if __name__ == "__main__":
    sys.exit(main())
