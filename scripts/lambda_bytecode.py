"""Add compiled bytecode for the Lambda runtime's Python to the deploy zip (serverless package
runs this through scripts/serverless-bytecode.js, after serverless-python-requirements has
added the dependencies).

    python scripts/lambda_bytecode.py .serverless/chat-sessions.zip

Why: Lambda's code directory is read-only, so a zip without bytecode is compiled again, file
by file, on every cold start (the deploy excludes the local `__pycache__`, which is for this
machine's Python anyway, and the requirements plugin's `slim` strips the dependencies' .pyc).
Every .py in the zip, ours and the dependencies', gets `__pycache__/NAME.cpython-312.pyc`
compiled by the runtime's own Python (bytecode is specific to one minor version) as an
*unchecked-hash* pyc: a timestamp pyc would be checked against the source's mtime, which a
zip keeps only to two seconds and in local time, and a hash-checked one would hash every
source at every import. Unchecked is safe here because the zip is immutable: the pyc and its
source are written together, once, and scripts/check_package.py verifies each hash.

The runtime's Python: `LAMBDA_PYTHON`, else `python3.12` on the PATH, else pyenv's 3.12.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

#: The deploy's runtime (serverless.yml `runtime: python3.12`).
RUNTIME = "3.12"
TAG = "cpython-" + RUNTIME.replace(".", "")
#: Where Lambda unpacks the zip: the file names recorded in the bytecode (tracebacks).
TASK_ROOT = "/var/task"

COMPILE = """
import compileall, py_compile, sys
ok = compileall.compile_dir(
    sys.argv[1], quiet=2, workers=0, stripdir=sys.argv[1], prependdir=sys.argv[2],
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
)
"""


def runtime_python() -> str:
    """The path of a CPython of the runtime's version.

    Raises:
        SystemExit: none found (names what to install or set).
    """
    candidates = [os.environ.get("LAMBDA_PYTHON", ""), shutil.which(f"python{RUNTIME}") or ""]
    home = Path.home()
    candidates += sorted(glob.glob(f"{home}/.pyenv/versions/{RUNTIME}.*/bin/python{RUNTIME}"))
    for candidate in filter(None, candidates):
        proc = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0 and proc.stdout.strip() == RUNTIME:
            return candidate
    raise SystemExit(
        f"lambda_bytecode: no Python {RUNTIME} (the Lambda runtime's) found: install it "
        f"(e.g. pyenv install {RUNTIME}) or set LAMBDA_PYTHON to its path"
    )


def add_bytecode(zip_path: Path, python: str) -> int:
    """Compile every .py of the zip with ``python`` and add the pycs; returns how many."""
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(zip_path) as archive:
            sources = [n for n in archive.namelist() if n.endswith(".py")]
            already = {n for n in archive.namelist() if n.endswith(".pyc")}
            for name in sources:
                archive.extract(name, tmp)
        subprocess.run([python, "-I", "-c", COMPILE, tmp, TASK_ROOT], check=True)
        added = 0
        with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in sources:
                parent, _, file = name.rpartition("/")
                pyc = f"{parent}/__pycache__/" if parent else "__pycache__/"
                pyc += f"{file[:-3]}.{TAG}.pyc"
                compiled = Path(tmp, pyc)
                if pyc in already or not compiled.is_file():
                    continue  # not valid Python 3.12 (never imported), or already there
                info = zipfile.ZipInfo(pyc, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, compiled.read_bytes())
                added += 1
    return added


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: lambda_bytecode.py PATH/TO/chat-sessions.zip", file=sys.stderr)
        return 2
    zip_path = Path(argv[0])
    python = runtime_python()
    added = add_bytecode(zip_path, python)
    print(f"lambda_bytecode: {added} .{TAG}.pyc added to {zip_path} (unchecked-hash)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
