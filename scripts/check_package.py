"""Check the Lambda zip that `serverless package` built (make package runs this).

    python scripts/check_package.py .serverless/chat-sessions.zip

Fails (exit 1, one line per problem) unless the zip holds our four packages and their
runtime dependencies, built for the Lambda runtime (CPython 3.12, arm64), and nothing that
must not ship: tests, benchmarks, node_modules, boto3/botocore (the runtime has them), local
tooling. Every .py carries its bytecode for the runtime's Python (scripts/lambda_bytecode.py:
an unchecked-hash pyc, whose hash must be its source's). Then it imports both handlers, and the
bot ``BOT`` names, from the unpacked zip alone, read-only: a fresh, isolated interpreter of the
runtime's version started in an empty directory, with the standard library and the zip's
contents as its only ``sys.path`` (no site-packages, not the repository), so a dependency
missing from requirements.txt, or a bot's file missing from ``package.patterns``, fails here,
naming it, and not at the first cold start; a module the runtime would compile at every cold
start fails too. Prints the size and the file count.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lambda_bytecode import TAG, runtime_python

ROOT = Path(__file__).resolve().parent.parent
#: Our packages: all their modules ship (``examples``: the default bot, ``examples.todo``).
OURS = ("sessions", "handlers", "bot", "examples")
RUNTIME_DEPS = (
    "slack_bolt",
    "slack_sdk",
    "requests",
    "urllib3",
    "certifi",
    "idna",
    "cryptography",
    "aws_lambda_powertools",
)
MUST_NOT_SHIP = (
    "tests/",
    "benchmarks/",
    "node_modules/",
    "boto3/",
    "botocore/",
    "s3transfer/",
    ".venv/",
    ".cache/",
    ".data/",
    ".serverless/",
    "handlers/tools/",
)
#: Local tooling that never runs in Lambda (make run, make chat, make admin).
LOCAL_ONLY = "handlers/tools/"
#: A sanity bound above what we ship (about 11 MB: 4.5 of them cryptography's Rust module,
#: 3.6 the runtime's bytecode); catches botocore (13 MB zipped) or a venv sneaking in.
MAX_BYTES = 16 * 1024 * 1024
#: ELF e_machine of arm64 (EM_AARCH64 = 183), little-endian.
AARCH64 = (183).to_bytes(2, "little")

IMPORT_CHECK = """
import sys
assert "" not in sys.path, sys.path
sys.path.insert(0, sys.argv[1])
import handlers.slack, handlers.messenger, handlers.serial
bad = [m.__name__ for m in list(sys.modules.values())
       if getattr(m, "__file__", None) and "site-packages" in m.__file__]
assert not bad, bad
# Loaded from the zip's bytecode, not compiled (the directory is read-only, as in Lambda).
import importlib.util, os
for m in list(sys.modules.values()):
    cached = getattr(m, "__cached__", None)
    if cached and cached.startswith(sys.argv[1]):
        assert os.path.isfile(cached), "no bytecode for " + m.__name__
"""
#: Each pyc's header against its source (run by the runtime's Python: the hash is keyed by
#: its version). Prints the names of the missing and the stale.
BYTECODE_CHECK = """
import importlib.util, pathlib, sys
root = pathlib.Path(sys.argv[1])
for source in root.rglob("*.py"):
    pyc = pathlib.Path(importlib.util.cache_from_source(str(source)))
    try:
        head = pyc.read_bytes()[:16]
    except FileNotFoundError:
        try:
            compile(source.read_bytes(), str(source), "exec")
        except SyntaxError:
            continue  # not Python of this version (a template): never imported
        print("no bytecode for", source.relative_to(root))
        continue
    flags = int.from_bytes(head[4:8], "little")
    if head[:4] != importlib.util.MAGIC_NUMBER or flags != 0b01:
        print("not an unchecked-hash pyc of this Python:", pyc.relative_to(root))
    elif head[8:16] != importlib.util.source_hash(source.read_bytes()):
        print("stale bytecode for", source.relative_to(root))
"""


def problems(zip_path: Path) -> list[str]:
    found: list[str] = []
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    for package in OURS:
        for source in sorted((ROOT / package).rglob("*.py")):
            name = source.relative_to(ROOT).as_posix()
            if "__pycache__" in name or name.startswith(LOCAL_ONLY):
                continue
            if name not in names:
                found.append(f"missing {name}")
    for dep in RUNTIME_DEPS:
        if f"{dep}/__init__.py" not in names:
            found.append(f"missing runtime dependency {dep}")
    with zipfile.ZipFile(zip_path) as archive:
        for name in sorted(names):
            if name.startswith(MUST_NOT_SHIP) or (
                name.endswith(".pyc") and not name.endswith(f".{TAG}.pyc")
            ):
                found.append(f"must not ship {name}")
            # The ELF header says the machine (abi3 modules do not name it in the file name).
            if name.endswith(".so") and archive.read(name)[18:20] != AARCH64:
                found.append(f"native module not built for arm64: {name}")
    return found


@contextlib.contextmanager
def unpacked(zip_path: Path) -> Iterator[Path]:
    """The zip's contents in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tmp)
        yield Path(tmp)


def run_from(root: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of the runtime's version that sees only the standard
    library and ``root`` (the zip's contents, made read-only as Lambda's code directory is):
    isolated (``-I``: no PYTHON* variables, no user site, and neither the current directory nor
    a script's is put on ``sys.path``), no site-packages (``-S``), started in an empty
    directory. A bot or module at the repository's root that the zip lacks cannot be found from
    here, as it cannot in Lambda."""
    _read_only(root)
    try:
        with tempfile.TemporaryDirectory() as empty:
            return subprocess.run(
                [runtime_python(), "-I", "-S", "-B", "-c", code, str(root), *args],
                cwd=empty,
                capture_output=True,
                text=True,
                check=False,
            )
    finally:
        _read_only(root, undo=True)


def import_check(zip_path: Path) -> list[str]:
    with unpacked(zip_path) as root:
        stale = subprocess.run(
            [runtime_python(), "-I", "-B", "-c", BYTECODE_CHECK, str(root)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        if stale:
            return [*stale[:20], f"{len(stale)} files without good bytecode"]
        proc = run_from(root, IMPORT_CHECK)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return [f"handlers do not import from the zip alone: {last}"]
    return []


def _read_only(root: Path, *, undo: bool = False) -> None:
    """Lambda's code directory is read-only; ``undo`` lets the temporary directory go."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if undo else mode & ~0o222)


BOT_CHECK = """
import importlib, sys
sys.path.insert(0, sys.argv[1])
module, _, attribute = sys.argv[2].partition(":")
getattr(importlib.import_module(module), attribute)
"""


def bot_check(zip_path: Path, bot: str) -> list[str]:
    """The bot the functions run (``BOT``) imports from the zip alone: a bot of your own
    whose files are not in ``package.patterns`` fails here, not at the first cold start."""
    with unpacked(zip_path) as root:
        proc = run_from(root, BOT_CHECK, bot)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return [
            f"BOT={bot} does not import from the zip: {last} (add its files to "
            "package.patterns in serverless.yml, its dependencies to requirements.txt)"
        ]
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_package.py PATH/TO/chat-sessions.zip", file=sys.stderr)
        return 2
    zip_path = Path(argv[0])
    if not zip_path.is_file():
        print(f"check_package: no zip at {zip_path} (run make package)", file=sys.stderr)
        return 1
    size = zip_path.stat().st_size
    found = problems(zip_path)
    if size > MAX_BYTES:
        found.append(f"zip is {size:,} bytes, over the {MAX_BYTES:,} bound")
    if not found:
        found = import_check(zip_path)
    if not found:
        found = bot_check(zip_path, os.environ.get("BOT") or "examples.todo:bot")
    with zipfile.ZipFile(zip_path) as archive:
        count = len(archive.namelist())
    for line in found:
        print(f"check_package: {line}", file=sys.stderr)
    status = "FAILED" if found else "ok"
    print(f"check_package: {status}: {zip_path} {size / 1e6:.2f} MB, {count} files")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
