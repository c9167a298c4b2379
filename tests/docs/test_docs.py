"""Every ``console`` block of README.md and docs/ runs as a user would type it, and shows what
the block shows.

Each block is found in the Markdown, its commands run by ``bash`` in a workspace that looks
like a fresh clone (the repository's files linked into an empty directory, so ``make run``
writes its ``.data/`` there), servers started with ``make run`` where a block needs one, and
``make chat`` driven through a pipe with the lines the block types (the prompt's echo put back
as a terminal shows it). A block with ``$`` prompts is compared line by line with what ran
(the port this test uses read as the README's 3000; 32-hex-digit ids and UTC dates as such);
a block of bare commands must exit 0 and do what its comment says.

A block, or one of its commands, that cannot run here is marked in the source, right above
the block: ``<!-- not-run: why -->`` (the whole block) or ``<!-- not-run 'make test': why -->``
(the commands starting so). A block run by a test of its own carries ``<!-- test: name -->``.
A block neither run here nor marked fails :func:`test_every_block_is_run_or_marked`. The
summary at the end of the run lists the blocks run and those not run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.docs import report
from tests.dynamodb_local import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"((?:<!--[^\n]*-->\n)*)```console\n(.*?)```", re.S)
NOT_RUN = re.compile(r"""<!-- not-run(?: '(?P<prefix>[^']+)')?: (?P<why>.*?) -->""")
TESTED = re.compile(r"<!-- test: (?P<name>[\w-]+) -->")
#: Tests elsewhere that run a block marked ``<!-- test: name -->``.
TESTS_OF = {
    "dynamodb-local": "tests/e2e/test_dynamodb_local_readme.py",
    "assistant": "tests/e2e/test_local_server.py",
}


@dataclass
class Block:
    file: str
    line: int
    text: str
    marks: str
    #: (command, the output lines shown after it) in order.
    steps: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    def skipped(self) -> dict[str, str]:
        """Commands marked not-run, by prefix ('' for the whole block), with why."""
        return {m["prefix"] or "": m["why"] for m in NOT_RUN.finditer(self.marks)}

    def runs(self, command: str) -> bool:
        return not any(command.startswith(p) for p in self.skipped() if p)


def blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start(2)].count("\n")
            block = Block(str(path.relative_to(ROOT)), line, match[2], match[1])
            lines = match[2].splitlines()
            if any(ln.startswith("$ ") for ln in lines):
                for ln in lines:
                    if ln.startswith("$ "):
                        block.steps.append((ln[2:], []))
                    elif block.steps:
                        block.steps[-1][1].append(ln)
            else:
                block.steps = [(ln, []) for ln in lines if ln.strip()]
            found.append(block)
    return found


# -- running as a user does -----------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would change what a command does (a BOT, a store, a
    port, secrets, make's own flags)."""
    drop = ("BOT", "PORT", "SESSIONS_", "SLACK_", "MESSENGER_", "WHATSAPP_", "MAKEFLAGS",
            "MAKELEVEL", "MFLAGS", "LOCAL_CONFIG", "AWS_ENDPOINT_URL", "AWS_LAMBDA")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **extra}


def workspace(tmp: Path) -> Path:
    """An empty directory holding the repository's files (linked), as a fresh clone with its
    ``.venv`` already made: ``make`` runs there and writes ``.data/`` there."""
    tmp.mkdir(parents=True, exist_ok=True)
    for entry in ROOT.iterdir():
        if entry.name not in (".data", ".git", ".serverless", "__pycache__"):
            (tmp / entry.name).symlink_to(entry)
    return tmp


def bash(command: str, cwd: Path, env: dict[str, str], stdin: str = "") -> tuple[int, str]:
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # make's own line about a failed recipe is not the tool's output.
    out = [ln for ln in (done.stdout + done.stderr).splitlines() if not ln.startswith("make: ***")]
    return done.returncode, "\n".join(out)


class Served:
    """A ``make run`` (or any server command) in the background, stopped as Ctrl-C does."""

    def __init__(
        self, command: str, cwd: Path, port: int, *, ready: str = "/healthz", **env: str
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(f"{tempfile.gettempdir()}/docs-server-{port}.log", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=clean_env(PORT=str(port), **env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            try:
                if requests.get(f"{self.url}{ready}", timeout=2).status_code < 500:
                    return
            except requests.RequestException:
                time.sleep(0.2)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        return self.proc.returncode


def chat_session(cwd: Path, port: int, typed: list[str], args: str = "") -> list[str]:
    """``make chat`` with ``typed`` on its standard input, as a terminal shows it: each
    prompt followed by what was typed at it; the test's port read as 3000."""
    command = "make chat" + (f" ARGS={json.dumps(args)}" if args else "")
    code, out = bash(command, cwd, clean_env(PORT=str(port)), "".join(f"{t}\n" for t in typed))
    assert code == 0, out
    parts = out.split("you> ")
    shown = parts[0]
    for said, part in zip(typed + ["" for _ in parts], parts[1:], strict=False):
        shown += f"you> {said}\n{part}" if part or said else "you> "
    shown = shown.replace(f"127.0.0.1:{port}", "127.0.0.1:3000")
    return [ln.rstrip() for ln in shown.splitlines()]


HEX = re.compile(r"\b[0-9a-f]{32}\b")
DATE = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\b")


def same(shown: list[str], got: list[str]) -> None:
    """The block's lines against what ran: equal, ids and dates read as such."""

    def norm(lines: list[str]) -> list[str]:
        return [DATE.sub("<date>", HEX.sub("<id>", ln.rstrip())) for ln in lines]

    assert norm(got) == norm(shown), "\n".join(["shown:", *shown, "got:", *got])


# -- the blocks ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def readme(
    tmp_path_factory: pytest.TempPathFactory, dynamodb_endpoint: str
) -> Iterator[dict[str, Any]]:
    """The README's own workspace: a fresh clone where the quick start's ``make run`` serves
    and ``make chat``'s session is typed; the admin block then reads its store."""
    cwd = workspace(tmp_path_factory.mktemp("readme") / "chat-sessions")
    world: dict[str, Any] = {"cwd": cwd, "dynamodb": dynamodb_endpoint}
    yield world
    if "server" in world:
        world["server"].stop()


def _quick_start(block: Block, world: dict[str, Any]) -> None:
    [(run, _), (test, _)] = block.steps
    assert run.startswith("make run") and not block.runs(test)
    port = free_port()
    server = Served(run, world["cwd"], port)
    world["server"], world["port"] = server, port
    banner = server.output().splitlines()
    assert banner[0].startswith(f"Serving the bot on http://127.0.0.1:{port}  (store: SQLite")
    assert "created development config .data/local.env" in banner[0]
    assert requests.get(f"{server.url}/healthz", timeout=5).json()["store"] == "sqlite"
    assert (world["cwd"] / ".data" / "local.env").is_file()


def _readme_chat(block: Block, world: dict[str, Any]) -> None:
    [(command, shown)] = block.steps
    assert command.startswith("make chat")
    typed = [ln.removeprefix("you> ") for ln in shown if ln.startswith("you> ")]
    same([*shown, "you>"], chat_session(world["cwd"], world["port"], typed))


def _readme_admin(block: Block, world: dict[str, Any]) -> None:
    cwd, env = world["cwd"], clean_env()
    for command, _ in block.steps:
        if not block.runs(command):
            continue
        verb = re.search(r'ARGS="(\S+)', command)
        assert verb is not None, command
        stdin = "slack#T0LOCAL#U0LOCAL\n" if verb[1] == "delete" else ""  # typed to confirm
        code, out = bash(command, cwd, env, stdin)
        assert code == 0, (command, out)
        if verb[1] == "list":
            assert out.startswith("todo:D0LOCAL\tversion 4\t"), out
        elif verb[1] == "show":
            shown = json.loads(out)
            assert shown["key"] == "slack#T0LOCAL#U0LOCAL / todo:D0LOCAL"
            assert shown["state"] == {"items": [], "next_id": 2, "pending": None}
        elif verb[1] == "export":
            assert json.loads((cwd / "me.json").read_text())["user"] == "slack#T0LOCAL#U0LOCAL"
        elif verb[1] == "delete":
            assert "deleted" in out and "a tombstone blocks late redeliveries" in out
        else:
            assert verb[1] == "dead-letters" and out == "no dead letters for slack#T0LOCAL#U0LOCAL"


def _counter(block: Block, world: dict[str, Any]) -> None:
    """``BOT=counter:bot make run``, the README's bot saved as ``counter.py``; then, as the
    comment says, make chat: type +1, press #1."""
    [(command, _)] = block.steps
    readme = (ROOT / "README.md").read_text()
    source = re.search(r"<!-- test: counter -->\n```python\n(.*?)```", readme, re.S)
    assert source is not None
    cwd = workspace(world["cwd"].parent / "counter")
    (cwd / "counter.py").write_text(source[1])
    port = free_port()
    server = Served(command.split("#")[0], cwd, port)
    try:
        said = chat_session(cwd, port, ["+1", "#1"])
        assert said[3:] == [
            "you> +1", "bot> Count: 1", "       #1 [+1]  #2 [Report]",
            "you> #1", "bot> Count: 2", "       #1 [+1]  #2 [Report]", "you>",
        ], said  # fmt: skip
    finally:
        server.stop()


PACKAGED: dict[str, tuple[int, str]] = {}


def _package(block: Block, world: dict[str, Any]) -> None:
    """``make package`` (once for both blocks that show it), in the repository as CI runs it."""
    for command, _ in block.steps:
        if not block.runs(command):
            continue
        assert command.startswith("make package")
        if not PACKAGED:
            PACKAGED["run"] = bash("make package", ROOT, clean_env())
        code, out = PACKAGED["run"]
        assert code == 0, out
        assert "check_package: ok: .serverless/chat-sessions.zip" in out


def _dead_letters(block: Block, world: dict[str, Any]) -> None:
    """A bot whose turn raises ``KeyError('items')`` on a DM: dead-lettered; listed; the bug
    fixed; replayed."""
    cwd = workspace(world["cwd"].parent / "dead-letters")
    broken = cwd / "broken"
    broken.write_text("")
    (cwd / "buggy.py").write_text(
        "from pathlib import Path\n"
        "from examples.todo import TodoBot\n\n\n"
        "class Buggy(TodoBot):\n"
        "    def turn(self, state, message):\n"
        f"        if Path({str(broken)!r}).exists():\n"
        "            raise KeyError('items')\n"
        "        return super().turn(state, message)\n\n\n"
        "bot = Buggy()\n"
    )
    port = free_port()
    server = Served("make run", cwd, port, BOT="buggy:bot")
    try:
        said = chat_session(cwd, port, ["add milk"])
        assert said[4].startswith("bot> Sorry, something went wrong"), said
        [(listing, listed), (retry, replayed)] = block.steps
        env = clean_env(BOT="buggy:bot")
        code, out = bash(listing, cwd, env)
        assert code == 0, out
        same(listed, out.splitlines())
        broken.unlink()  # the bug fixed
        real = out.split("\t", 1)[0]
        code, out = bash(HEX.sub(real.rsplit("#", 1)[1], retry), cwd, env)
        assert code == 0, out
        same(replayed, out.splitlines())
    finally:
        server.stop()


def _prompted(block: Block, world: dict[str, Any]) -> None:
    """A block of ``$`` commands that need no server: each run in the repository, its
    output compared."""
    for command, shown in block.steps:
        _, out = bash(command, ROOT, clean_env())
        same(shown, out.splitlines())


def _pages(block: Block, world: dict[str, Any]) -> None:
    """A page's token kept and forgotten, in the README's workspace (its store exists)."""
    cwd = world["cwd"]
    (cwd / "page-token.txt").write_text("EAA-local-token\n")
    outs = []
    for command, _ in block.steps:
        code, out = bash(command, cwd, clean_env())
        assert code == 0, (command, out)
        outs.append(out)
    assert outs == [
        "messenger 100200300: token kept (answers its messages within 5 minutes)",
        "messenger 100200300: token removed",
    ]


def _offline(block: Block, world: dict[str, Any]) -> None:
    """The deploy's functions under serverless-offline on DynamoDB Local (the block's exports,
    its ports swapped for free ones), then ``make chat`` against it as the block says: a
    slash command learnt from the fakes beside the emulator, a reminder fired by the timers'
    loop beside it."""
    dynamodb = world["dynamodb"]
    port, fakes, lam = free_port(), free_port(), free_port()
    table = f"sessions-docs-{port}"
    commands = [c for c, _ in block.steps]
    exports = [
        c.replace("http://127.0.0.1:8000", dynamodb).replace("SESSIONS_TABLE=sessions",
                                                             f"SESSIONS_TABLE={table}")
        for c in commands if c.startswith("export ")
    ]  # fmt: skip
    [offline] = [c for c in commands if c.startswith("make offline")]
    [chat] = [c for c in commands if c.startswith("make chat")]
    # In the repository, as tests/e2e/test_offline.py runs it (the framework finds its
    # plugins from there); the schedules in a file of this test's.
    cwd = ROOT
    prefix = "; ".join(exports) + "; "
    code, out = bash(prefix + "make admin ARGS=create-table", cwd, clean_env())
    assert code == 0, out
    timers = world["cwd"].parent / "offline-timers.sqlite3"
    env = {"OFFLINE_FAKE_PORT": str(fakes), "OFFLINE_LAMBDA_PORT": str(lam),
           "SESSIONS_TIMERS_DB": str(timers)}  # fmt: skip
    server = Served(prefix + offline, cwd, port, ready="/messenger/webhook", **env)
    try:
        args = re.search(r'ARGS="([^"]*)"', chat)
        assert args is not None and "127.0.0.1:3003" in args[1]
        said = chat_session(
            cwd, port, ["/todo add stretch", "remind me about 1 in 2 seconds", "/wait 60"],
            args[1].replace("127.0.0.1:3003", f"127.0.0.1:{fakes}"),
        )  # fmt: skip
        assert said[3:] == [
            "you> /todo add stretch", "bot> Added “stretch”. You have 1 item.",
            "you> remind me about 1 in 2 seconds",
            "bot> OK, I'll remind you about “stretch” in 2 seconds.",
            "you> /wait 60", "bot> ⏰ Reminder: “stretch”", "       #1 [Done]", "you>",
        ], said  # fmt: skip
    finally:
        server.stop()


#: Which runner runs a block: the first match of its first command.
RUNNERS: list[tuple[str, Callable[[Block, dict[str, Any]], None]]] = [
    (r"make run +# serve the bot", _quick_start),
    (r"make chat ", _readme_chat),
    (r'make admin ARGS="list ', _readme_admin),
    (r"BOT=counter:bot make run", _counter),
    (r"make package", _package),
    (r'make admin ARGS="dead-letters ', _dead_letters),
    (r"make replay ", _prompted),
    (r'make admin ARGS="add-page ', _pages),
    (r"export AWS_ACCESS_KEY_ID=local .*\n?", _offline),
]


def runner(block: Block) -> Callable[[Block, dict[str, Any]], None] | None:
    if TESTED.search(block.marks):
        return None  # run by a test of its own
    first = block.steps[0][0] if block.steps else ""
    for pattern, run in RUNNERS:
        if re.match(pattern, first):
            return run
    return None


ALL = blocks()
for _block in ALL:
    for _prefix, _why in _block.skipped().items():
        what = "the block" if not _prefix else f"{_prefix!r}"
        report.NOT_RUN.append(f"{_block.id}: {what}: {_why}")


def test_every_block_is_run_or_marked() -> None:
    unaccounted = [
        b.id
        for b in ALL
        if runner(b) is None and "" not in b.skipped() and not TESTED.search(b.marks)
    ]
    assert unaccounted == [], "console blocks neither run by this test nor marked not-run"
    assert len(ALL) >= 14


RUNNABLE = [b for b in ALL if runner(b) is not None and "" not in b.skipped()]


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_the_block_runs_and_shows_what_it_shows(block: Block, readme: dict[str, Any]) -> None:
    run = runner(block)
    assert run is not None and "" not in block.skipped()
    run(block, readme)
    ran = [c.split("  #")[0].strip() for c, _ in block.steps if block.runs(c)]
    report.RAN.append(f"{block.id}: {' | '.join(ran)}")


def test_blocks_run_by_tests_of_their_own() -> None:
    for block in ALL:
        found = TESTED.search(block.marks)
        if found:
            test = TESTS_OF[found["name"]]
            assert (ROOT / test).is_file()
            report.RAN.append(f"{block.id}: {block.steps[0][0]} (by {test})")


INLINE = re.compile(r"`((?:[A-Z_]+=\S+ )*make [a-z-]+[^`]*)`")


def test_every_make_line_in_the_prose_names_what_exists() -> None:
    """Each ``make ...`` the prose shows in backticks names a Makefile target, a ``BOT`` that
    loads (the README's ``counter.py`` is the one the reader saves) and a ``FILE`` that
    exists; a ``make admin`` line's ``ARGS`` parse."""
    from handlers.entry import load_bot
    from handlers.tools import admin

    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    checked = 0
    for path in DOCS:
        for line in sorted(set(INLINE.findall(path.read_text()))):
            target = re.search(r"make ([a-z-]+)", line)
            assert target is not None and target[1] in targets, (path.name, line)
            for bot in re.findall(r"BOT=(\S+:\S+)", line):
                if bot != "counter:bot":
                    load_bot(bot)
            for file in re.findall(r"FILE=(\S+)", line):
                assert (ROOT / file).is_file(), (path.name, line)
            args = re.search(r'ARGS="([^"]*)"', line)
            if target[1] == "admin" and args and "..." not in args[1] and "<" not in args[1]:
                admin._parser().parse_args(args[1].split())
            checked += 1
    assert checked >= 20
    report.RAN.append(f"{checked} inline `make ...` lines of the prose: targets, BOT, FILE, ARGS")
