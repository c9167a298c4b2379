"""A headless Chromium driven over the DevTools protocol, for the inspector's browser test:
real mouse clicks and typed keys (``Input.*``), page reads by script (``Runtime.evaluate``),
screenshots. No WebDriver: the browser's own protocol, over one WebSocket."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import websocket

BINARIES = ("chromium", "chromium-browser", "google-chrome")


class BrowserError(RuntimeError):
    pass


def binary() -> str | None:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    def __init__(self, url: str) -> None:
        self._ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self._ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        call = next(self._ids)
        self._ws.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == call:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result") or {}
                return result

    def eval(self, script: str) -> Any:
        result = self.send(
            "Runtime.evaluate", expression=script, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{script[:80]}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait(lambda: self.eval("document.readyState") == "complete", "the page loads")

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise BrowserError(f"timed out waiting until {what}")

    def wait_for(self, script: str, what: str, timeout: float = 15) -> Any:
        return self.wait(lambda: self.eval(script), what, timeout)

    def click(self, selector: str) -> None:
        """A real click (mouse down and up) at the middle of the first match."""
        box = self.wait_for(
            f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
                if (!el) return null; el.scrollIntoView({{block: "center"}});
                const r = el.getBoundingClientRect();
                return r.width ? {{x: r.x + r.width / 2, y: r.y + r.height / 2}} : null; }})()""",
            f"{selector} is on the page",
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"],
                      button="left", clickCount=1)  # fmt: skip

    def type(self, selector: str, text: str, *, enter: bool = False) -> None:
        """Focus ``selector`` (clearing it) and type ``text`` as keystrokes would."""
        self.click(selector)
        self.eval(f"document.querySelector({json.dumps(selector)}).value = ''")
        self.send("Input.insertText", text=text)
        if enter:
            for kind in ("keyDown", "keyUp"):
                typed = "\r" if kind == "keyDown" else ""
                self.send("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                          windowsVirtualKeyCode=13, text=typed)  # fmt: skip

    def text(self, selector: str) -> str:
        return str(
            self.eval(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''")
        )

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._ws.close()


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[Page]:
    found = binary()
    if found is None:
        raise BrowserError(
            "Chromium is missing: `make test` installs it (scripts/ensure-chromium.sh)"
        )
    profile = tempfile.mkdtemp(prefix="inspector-browser-")
    args = [found, "--headless=new", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", f"--window-size={width},{height}",
            "--hide-scrollbars", "about:blank"]  # fmt: skip
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = None
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        while endpoint is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise BrowserError(f"Chromium exited with {proc.returncode}")
            found_url = re.search(r"DevTools listening on (ws://\S+)", line)
            if found_url:
                endpoint = found_url.group(1)
        if endpoint is None:
            raise BrowserError("Chromium did not open its DevTools port")
        # Keep reading its log, or a full pipe stalls the browser.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        port = re.search(r"ws://[^:]+:(\d+)/", endpoint).group(1)  # type: ignore[union-attr]
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.loads(answer.read())
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        page = Page(page_url)
        page.send("Page.enable")
        page.send("Runtime.enable")
        try:
            yield page
        finally:
            page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
