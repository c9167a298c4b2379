"""What the local server refuses before routing: requests a browser sends from another origin.

``make run`` holds the developer's real signing secret and bot token when they develop
against a real Slack app, and any web page they visit can make their browser send requests to
``127.0.0.1``. Starlette's ``TrustedHostMiddleware`` is the model; the rules, in order:

1. **Host allow-list.** Every local route (``/``, ``/healthz``, ``/_inspector/*``,
   ``/_fake/*``) answers only to ``Host: 127.0.0.1:<port>``, ``localhost:<port>`` or
   ``[::1]:<port>``. A DNS-rebinding page (``evil.example`` re-pointed at 127.0.0.1) sends its
   own name as ``Host`` and is refused, so it cannot read users' messages off
   ``/_inspector/view`` or ``/_fake/outbox``. The platform webhooks (``/slack/events``,
   ``/slack/install``, ``/slack/oauth_redirect``, ``/messenger/webhook``,
   ``/whatsapp/webhook``) are exempt: a tunnel (ngrok and the like) forwards them with the
   tunnel's own name as ``Host``, and they are protected by what the platform signs (Slack's
   ``X-Slack-Signature``, Meta's ``X-Hub-Signature-256``; the OAuth ``state``), which a
   browser cannot forge.
2. **Origin.** A state-changing request (any method but ``GET``/``HEAD``) that carries an
   ``Origin`` header is refused unless that origin is this server's own (the loopback names
   above, ``http``, this port). Browsers send ``Origin`` on every cross-origin ``POST``: a
   ``text/plain`` form, a ``no-cors`` fetch. Slack, Meta and local clients (``make chat``,
   the edges' own calls) send none.
3. **JSON only** on ``/_inspector/*`` actions: ``Content-Type: application/json``. A form or
   a ``no-cors`` fetch cannot send that type, and a cross-origin fetch that does is
   preflighted, which this server never answers.
4. **A per-run secret**, generated at each start: the inspector's page carries it (embedded
   in the page, sent back as the ``X-Inspector-Secret`` header) on ``/_inspector/*`` actions;
   the fake Slack/Graph APIs take actions only under ``/_fake/<secret>/`` (the API URLs the
   server gives its own edges; ``GET /_fake/base`` tells a local client the prefix). A page
   on another origin cannot read either (no CORS headers are ever sent).

A refusal is a 4xx with the reason in its body and a log line (the path, never the secret).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from sessions.privacy import private

log = private(logging.getLogger("handlers.tools.local"))

#: Loopback names the local routes answer to (with the port).
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
#: Routes a platform reaches, through a tunnel too: protected by their signatures.
WEBHOOKS = frozenset(
    {
        "/slack/events",
        "/slack/install",
        "/slack/oauth_redirect",
        "/messenger/webhook",
        "/whatsapp/webhook",
    }
)
SAFE_METHODS = frozenset({"GET", "HEAD"})
SECRET_HEADER = "x-inspector-secret"  # noqa: S105 (a header's name)
#: Fixes the per-run secret instead of a fresh one (``make offline`` hands its fakes the one
#: it gave the emulator's functions; a script that sets the API URLs itself may set it).
RUN_SECRET = "LOCAL_RUN_SECRET"  # noqa: S105 (a variable's name)


def run_secret() -> str:
    """This run's secret: ``$LOCAL_RUN_SECRET``, else a fresh one."""
    return os.environ.get(RUN_SECRET) or secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the HTTP status and a reason for the body and the log."""

    status: int
    reason: str

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The HTTP answer: the status, the reason as plain text."""
        return (
            self.status,
            {"content-type": "text/plain; charset=utf-8"},
            f"{self.reason}\n".encode(),
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def media_type(headers: Mapping[str, str]) -> str:
    """The body's media type, lower-cased, without its parameters (``; charset=...``)."""
    return (_header(headers, "content-type") or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Guard:
    """The rules of the module for a server on ``port`` whose per-run secret is ``secret``."""

    port: int
    secret: str

    @property
    def hosts(self) -> frozenset[str]:
        names = {f"{name}:{self.port}" for name in LOOPBACK}
        if self.port == 80:  # a browser leaves the default port out
            names.update(LOOPBACK)
        return frozenset(names)

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}" for host in self.hosts)

    def fake_prefix(self) -> str:
        """Where the fake APIs take actions: ``/_fake/<secret>``."""
        return f"/_fake/{self.secret}"

    def redact(self, path: str) -> str:
        """``path`` with the secret left out (for log lines)."""
        return path.replace(self.secret, "…") if self.secret else path

    def check(self, method: str, path: str, headers: Mapping[str, str]) -> Refusal | None:
        """``None``: the request may be routed; else why it is refused."""
        if path not in WEBHOOKS:
            host = (_header(headers, "host") or "").strip().lower()
            if host not in self.hosts:
                return Refusal(
                    400,
                    f"this server answers only to 127.0.0.1, localhost or [::1] on port "
                    f"{self.port}, not to Host {host[:80]!r} (a page on another site, or a "
                    "tunnel: only the platform webhooks are served through one)",
                )
        if method in SAFE_METHODS:
            return None
        origin = _header(headers, "origin")
        if origin is not None and origin.strip().lower() not in self.origins:
            return Refusal(403, f"cross-origin request refused (Origin {origin[:80]!r})")
        if path.startswith("/_inspector/"):
            if media_type(headers) != "application/json":
                return Refusal(415, "the inspector takes JSON bodies only (application/json)")
            sent = _header(headers, SECRET_HEADER) or ""
            if not hmac.compare_digest(sent.encode(), self.secret.encode()):
                return Refusal(
                    403,
                    "missing or wrong X-Inspector-Secret: the inspector's actions come from its "
                    "own page (reload it after a restart)",
                )
        elif path.startswith("/_fake/"):
            prefix = self.fake_prefix() + "/"
            if not hmac.compare_digest(path[: len(prefix)].encode(), prefix.encode()):
                return Refusal(
                    403,
                    "the fake APIs take actions only from this run's edges, under "
                    "/_fake/<secret>/ (GET /_fake/base says the prefix)",
                )
        return None

    def refused(self, method: str, path: str, headers: Mapping[str, str]) -> Refusal | None:
        """:meth:`check`, with a log line for a refusal."""
        refusal = self.check(method, path, headers)
        if refusal is not None:
            log.warning(
                "refused %s %s: %s (%d)", method, self.redact(path), refusal.reason, refusal.status
            )
        return refusal


__all__ = [
    "RUN_SECRET",
    "SECRET_HEADER",
    "WEBHOOKS",
    "Guard",
    "Refusal",
    "media_type",
    "run_secret",
]
