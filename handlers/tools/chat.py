"""The chat simulator (``make chat``): talk to the running local server as Slack or Messenger.

Each line you type is sent as a really signed request, the way the platform would send it:
a Slack DM (Events API ``message.im``; a line starting with one of the bot's slash commands is
sent as that command), or a Messenger message. The bot's replies are read back from the
server's fake Slack/Graph routes (or from the slash command's HTTP answer) and printed, their
buttons and quick replies numbered: ``#2`` presses the second (the buttons of the latest
replies that had any: replies without buttons leave them pressable). A Slack modal the bot
opens (from a command or a button) is asked field by field and submitted (a form the bot
refuses stays open with its messages). When no reply comes, the line says why, from the
server's delivery journal (a dead letter, a turn that answered nothing, an event dropped
before the bot). ``/state`` shows what the server's store holds for the conversation, every
scope of it (asked of the server, so it is the store the server uses), ``/timers`` the bot's
pending timers, ``/wait [seconds]``
waits for replies that come later (a timer's, a slow effect's; they are also shown before
each prompt), ``/quit`` (or Ctrl-D) leaves.

Slack threads: a reply posted in a thread is shown as ``[thread <ts>] ...`` unless you are in
it; ``/thread <ts>`` enters that thread (your lines are sent in it, with its ``thread_ts``),
``/thread`` alone goes back to the channel's top level; ``/assistant [channel]`` opens an
assistant thread, as Slack's assistant pane does (``assistant_thread_started``, viewing
``channel``), and enters it. The bot's status, title and suggested prompts are shown as
``(status: ...)``, ``(title: ...)`` and numbered prompts: ``#N`` sends a prompt's message.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from handlers.tools.chat_client import (
    PLATFORMS,
    WHATSAPP_NUMBER,
    WHATSAPP_USER,
    ChatClient,
    _streaming,
    bot_commands,
)
from handlers.tools.chat_render import state_lines, timer_lines
from handlers.tools.silence import ChatError

#: The client and the printing are in ``chat_client`` and ``chat_render``: importable from
#: here too, as they were.
__all__ = [
    "PLATFORMS",
    "WHATSAPP_NUMBER",
    "WHATSAPP_USER",
    "ChatClient",
    "ChatError",
    "_streaming",
    "bot_commands",
    "fill_form",
    "main",
    "state_lines",
    "timer_lines",
]


def fill_form(client: ChatClient) -> list[str]:
    """Ask for each field of the open modal on the terminal, then submit it."""
    values: dict[str, str] = {}
    for field in client.form_fields():
        choices = f" ({' / '.join(field['options'])})" if field["options"] else ""
        optional = " [optional]" if field["optional"] else ""
        values[field["name"]] = input(f"  {field['label']}{choices}{optional}: ").strip()
    return client.submit(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chat", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--platform", choices=PLATFORMS, default=os.environ.get("CHAT_PLATFORM", "slack-dm")
    )
    parser.add_argument("--user", help="Slack user id (U...) or Messenger PSID (digits)")
    parser.add_argument("--channel", help="Slack channel id, or the Messenger page id")
    parser.add_argument(
        "--team", default="T0LOCAL", help="Slack workspace (team) id (default: T0LOCAL)"
    )
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT') or 3000}")
    parser.add_argument(
        "--outbox",
        help="where the fake APIs keep the replies, when not the server itself (make offline: "
        "http://127.0.0.1:3003)",
    )
    args = parser.parse_args(argv)
    try:
        client = ChatClient(args.url, platform=args.platform, user=args.user,
                            channel=args.channel, outbox=args.outbox, team=args.team)  # fmt: skip
    except ChatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Talking to {args.url} as {args.platform} user {client.user} in {client.channel}.")
    print("Type `help` for the bot's commands, #N to press button N, /state for the stored")
    print("state, /timers for pending timers, /wait N to wait for later replies, /quit to leave.")
    while True:
        try:
            for reply in client.more(timeout=0):  # what came meanwhile (a timer fired)
                print("bot> " + reply.replace("\n", "\n     "))
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line:
            continue
        if line in {"/quit", "/exit"}:
            return 0
        try:
            if line == "/state":
                stored = client.state()
                if stored is None:
                    print("nothing stored for this conversation yet")
                elif "error" in stored:
                    print(stored["error"])
                else:
                    for line in state_lines(stored):
                        print(line)
                continue
            if line == "/timers":
                for text in timer_lines(client.state(), time.time()):
                    print(text)
                continue
            if line.split(" ", 1)[0] == "/wait":
                seconds = line[5:].strip()
                wait = float(seconds) if seconds.replace(".", "", 1).isdecimal() else 10.0
                for reply in client.more(timeout=wait) or ["(nothing came)"]:
                    print("bot> " + reply.replace("\n", "\n     "))
                continue
            if line.split(" ", 1)[0] == "/thread" and client.platform.startswith("slack"):
                client.thread = line[len("/thread") :].strip() or None
                print(f"(in thread {client.thread})" if client.thread else "(top level)")
                continue
            if line.split(" ", 1)[0] == "/assistant" and client.platform.startswith("slack"):
                replies = client.start_assistant(line[len("/assistant") :].strip() or None)
                print(f"(in assistant thread {client.thread})")
                for reply in replies:
                    print("bot> " + reply.replace("\n", "\n     "))
                continue
            if line.startswith("#") and line[1:].isdecimal():
                replies = client.press(int(line[1:]))
            else:
                replies = client.send(line)
            for reply in replies:
                print("bot> " + reply.replace("\n", "\n     "))
            while client.modal is not None:  # the bot opened a form: fill it in, submit it
                title = (client.modal.get("title") or {}).get("text", "form")
                print(f"form> {title}")
                for reply in fill_form(client):
                    print("bot> " + reply.replace("\n", "\n     "))
        except ChatError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except Exception as exc:  # keep the REPL alive; say what broke in one line
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
