"""AWS's DynamoDB Local for integration tests and benchmarks.

DynamoDB Local ships inside the npm package ``amplify-dynamodb-simulator`` (its
``package/emulator/`` folder holds ``DynamoDBLocal.jar`` and ``DynamoDBLocal_lib/``). We fetch
it once with ``npm pack`` into ``.cache/`` (git-ignored), then start it on a free loopback port
with ``-inMemory -disableTelemetry`` and stop it by its pid.

Run ``python -m tests.dynamodb_local`` to install it ahead of time (``make test`` does), and
``python -m tests.dynamodb_local --serve --port 8000`` (``make dynamodb``) to keep one running
on a port for the local server and the admin CLI, its tables kept in ``.data/dynamodb/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "amplify-dynamodb-simulator"
VERSION = "2.9.30"
ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(
    os.environ.get("DYNAMODB_LOCAL_DIR", ROOT / ".cache" / f"dynamodb-local-{VERSION}")
)


class DynamoDBLocalUnavailable(RuntimeError):
    """Raised with a message that names what is missing (java, npm, the jar)."""


def install(cache_dir: Path = CACHE_DIR) -> Path:
    """Fetch DynamoDB Local into ``cache_dir`` unless it is already there; return its folder."""
    jar = cache_dir / "DynamoDBLocal.jar"
    if jar.is_file() and (cache_dir / "DynamoDBLocal_lib").is_dir():
        return cache_dir
    npm = shutil.which("npm")
    if npm is None:
        raise DynamoDBLocalUnavailable(
            "npm is needed to fetch DynamoDB Local (npm pack "
            f"{PACKAGE}@{VERSION}); install Node.js and npm"
        )
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir.parent) as tmp:
        subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tarball = next(Path(tmp).glob("*.tgz"))
        staging = Path(tmp) / "emulator"
        prefix = "package/emulator/"
        with tarfile.open(tarball) as archive:
            members = []
            for member in archive.getmembers():
                if not member.name.startswith(prefix) or member.name == prefix:
                    continue
                member.name = member.name[len(prefix) :]
                members.append(member)
            archive.extractall(staging, members=members, filter="data")
        if not (staging / "DynamoDBLocal.jar").is_file():
            raise DynamoDBLocalUnavailable(f"{tarball.name} holds no emulator/DynamoDBLocal.jar")
        # Rename last, so an interrupted fetch never leaves a half-filled cache behind.
        if cache_dir.exists():
            shutil.rmtree(cache_dir)
        staging.rename(cache_dir)
    return cache_dir


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise DynamoDBLocalUnavailable(
            "java is needed to run DynamoDB Local: install Debian's openjdk-17-jre-headless "
            "(make test does this when it runs as root)"
        )
    return java


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Running:
    endpoint: str
    pid: int


def _answers(endpoint: str) -> bool:
    # Any HTTP answer (DynamoDB Local says 400 to a bare GET) means the server is up.
    try:
        with urllib.request.urlopen(endpoint, timeout=1):  # noqa: S310 (loopback only)
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running(
    *, startup_timeout: float = 60.0, port: int | None = None, db_path: Path | None = None
) -> Iterator[Running]:
    """Start DynamoDB Local on a loopback port (a free one unless given), in memory unless
    ``db_path`` is given (then one shared database file there, whatever the credentials and
    region of the client); stop it on exit."""
    folder = install()
    java = java_binary()
    port = port or free_port()
    if db_path is None:
        storage = ["-inMemory"]
    else:
        db_path.mkdir(parents=True, exist_ok=True)
        storage = ["-sharedDb", "-dbPath", str(db_path.resolve())]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        [
            java,
            "-Djava.library.path=DynamoDBLocal_lib",
            "-jar",
            "DynamoDBLocal.jar",
            *storage,
            "-disableTelemetry",
            "-port",
            str(port),
        ],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers(endpoint):
            if proc.poll() is not None:
                log.seek(0)
                raise DynamoDBLocalUnavailable(
                    f"DynamoDB Local exited with {proc.returncode}: {log.read()[-2000:]!r}"
                )
            if time.monotonic() > deadline:
                raise DynamoDBLocalUnavailable(
                    f"DynamoDB Local did not answer within {startup_timeout:.0f} s"
                )
            time.sleep(0.1)
        yield Running(endpoint=endpoint, pid=proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def serve(port: int, db_path: Path) -> None:
    """Run DynamoDB Local on ``port`` until Ctrl-C (``make dynamodb``)."""
    with running(port=port, db_path=db_path) as server:
        print(f"DynamoDB Local {VERSION} on {server.endpoint}, tables in {db_path}/ (Ctrl-C stops)")
        print(
            "In another terminal: export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local "
            f"AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL_DYNAMODB={server.endpoint}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.dynamodb_local")
    parser.add_argument("--serve", action="store_true", help="run it until Ctrl-C")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db-path", type=Path, default=ROOT / ".data" / "dynamodb")
    args = parser.parse_args()
    try:
        if args.serve:
            serve(args.port, args.db_path)
            sys.exit(0)
        print(f"DynamoDB Local {VERSION} in {install()}")
        java_binary()
    except (DynamoDBLocalUnavailable, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
