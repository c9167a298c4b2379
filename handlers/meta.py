"""Meta's webhooks, one family for Messenger, Instagram and WhatsApp: the verification
handshake (``GET``), the ``X-Hub-Signature-256`` check over the exact bytes Meta sent, and a
batch's messages run per sender, in order, senders side by side. Each platform's edge parses
its own payloads and keeps its own tokens; what is the same for all of Meta's is here, once.
Imports no platform."""

from __future__ import annotations

import hashlib
import hmac
import json as _json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from bot.spec import BotSpec
from handlers.http import HttpRequest, response
from handlers.pipeline import Deadline, Pipeline
from handlers.pipeline.delivery import Delivery
from sessions import ConversationKey, SessionError
from sessions.privacy import private

if TYPE_CHECKING:
    from sessions.installations import Installations

log = private(logging.getLogger("handlers.meta"))


def verify(request: HttpRequest, expected: str) -> dict[str, Any]:
    """The subscription handshake: ``hub.challenge`` back when ``hub.verify_token`` is ours."""
    mode = request.first("hub.mode")
    token = request.first("hub.verify_token") or ""
    challenge = request.first("hub.challenge")
    token_ok = hmac.compare_digest(
        token.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )
    if mode == "subscribe" and challenge is not None and token_ok:
        return response(200, challenge)
    log.warning("webhook verification refused")
    return response(403, "forbidden")


def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``, compared in
    constant time over the exact bytes Meta sent (never re-serialised)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    given = header.removeprefix("sha256=").strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, given)  # bytes: any header text compares, never raises


def refused(request: HttpRequest, secret: str) -> dict[str, Any] | None:
    """The answer to a POST that is not signed with the app secret (401 unsigned, 403 a bad
    signature), else ``None``."""
    header = request.header("x-hub-signature-256")
    if header is None:
        log.warning("webhook POST without X-Hub-Signature-256 (sha1-only or unsigned)")
        return response(401, "missing X-Hub-Signature-256")
    if not signature_ok(request.body, header, secret):
        log.warning("webhook POST with a bad signature")
        return response(403, "invalid signature")
    return None


def run_by_sender(
    deliveries: Iterable[Delivery],
    run_sender: Callable[[Sequence[Delivery]], int],
    workers: int,
) -> dict[str, Any]:
    """Run a batch's deliveries (in timestamp order) grouped by sender, each sender's in order,
    senders in parallel up to ``workers``; ``run_sender`` returns 1 when its sender's turns
    failed in a way that can heal. Meta's answer: 500 then (nothing of the failed messages
    was written; the batch comes again and the committed ones are skipped), else 200."""
    by_sender: dict[ConversationKey, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        by_sender[delivery.key].append(delivery)
    groups = list(by_sender.values())
    if len(groups) <= 1 or workers <= 1:
        failures = sum(run_sender(group) for group in groups)
    else:
        with ThreadPoolExecutor(min(workers, len(groups))) as pool:
            failures = sum(pool.map(run_sender, groups))
    if failures:
        return response(500, "retry later")
    return response(200, "EVENT_RECEIVED")


def run_in_order(
    pipeline: Pipeline, spec: BotSpec, messages: Sequence[Delivery], deadline: Deadline
) -> int:
    """One sender's messages, in timestamp order. A slow one is handed off together with every
    later one (one job, run in order), so a fast message never overtakes a slow one. A message
    that fails in a way that can heal stops the rest (they would run on a state that misses
    it) and returns 1; a dead letter is skipped, as a redelivery would skip it, and the rest
    go on."""
    for index, delivery in enumerate(messages):
        if spec.is_slow(delivery.message):
            return 0 if pipeline.defer(tuple(messages[index:])) else 1
        try:
            pipeline.run(delivery, deadline=deadline)
        except SessionError:
            pipeline.report(delivery, "message turn failed before the commit")
            return 1
    return 0


def never_sent(exc: Exception) -> bool:
    """A Graph request that never reached Meta: no connection (refused, unresolvable, connect
    timeout), so it is safe to send again. A read timeout or a connection reset mid-answer is
    not that: the message may have been delivered. Both clients' failures: urllib3's own
    (:class:`GraphHTTP`), and ``requests``' (which carry urllib3's as their cause)."""
    import urllib3.exceptions as u3

    reason: Any = exc
    for _ in range(3):  # requests' ConnectionError(MaxRetryError(reason=NewConnectionError))
        if isinstance(reason, u3.ReadTimeoutError):
            return False
        if isinstance(reason, u3.NewConnectionError | u3.ConnectTimeoutError):
            return True
        reason = getattr(reason, "reason", None) or (reason.args[0] if reason.args else None)
        if not isinstance(reason, BaseException):
            return False
    return False


class GraphAnswer:
    """What :class:`GraphHTTP` answers: ``requests.Response``'s ``status_code``, ``text`` and
    ``json()``, which the senders read."""

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.content)


class GraphHTTP:
    """``post(url, params=, json=, timeout=(connect, read))`` as ``requests.Session`` sends
    it (query string, JSON body, keep-alive across warm turns), over urllib3 alone.

    Why not requests: its import (charset_normalizer with the CJK codecs, idna, cookie jars,
    about 100 modules) costs a cold Messenger turn more than its reply's request, and urllib3,
    which requests sends through, is loaded by botocore anyway. Nothing is retried here
    (``retries=False``): a failure is urllib3's own, classified by :func:`never_sent`.
    Certificates are certifi's, as requests verifies them. When the environment names a proxy
    for the URL (``HTTPS_PROXY``, not bypassed by ``NO_PROXY``) the call goes through
    ``requests`` instead, which honours it as before."""

    def __init__(self) -> None:
        import urllib3

        self._pool = urllib3.PoolManager(ca_certs=_ca_certs())
        self._proxied: Any = None

    def post(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        timeout: tuple[float, float],
    ) -> Any:
        import urllib3

        if _proxy_for(url):
            if self._proxied is None:
                import requests

                self._proxied = requests.Session()
            return self._proxied.post(url, params=params, json=json, timeout=timeout)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        answer = self._pool.request(
            "POST",
            url,
            body=_json.dumps(json, allow_nan=False).encode(),
            headers={"Content-Type": "application/json"},
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            retries=False,
            redirect=False,
        )
        return GraphAnswer(answer.status, answer.data)


def _ca_certs() -> str | None:
    try:
        import certifi
    except ImportError:  # urllib3's default: the system's certificates
        return None
    return str(certifi.where())


def _proxy_for(url: str) -> bool:
    """Whether the environment sends ``url`` through a proxy (as requests reads it)."""
    from urllib.request import getproxies, proxy_bypass

    scheme, _, rest = url.partition("://")
    proxies = getproxies()
    if not (proxies.get(scheme.lower()) or proxies.get("all")):
        return False
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return not proxy_bypass(host)


class AccountTokens:
    """Access tokens of Meta accounts (Pages, Instagram accounts, WhatsApp numbers), each from
    its sealed record in the sessions table (``make admin ARGS="add-page ..."``), cached per
    container for ``ttl`` seconds: a warm turn of a known account costs no request, and a token
    added or removed is seen by every container within ``ttl``. The platforms' token classes
    say which record kind and when ``default`` (the single-account token) stands in."""

    def __init__(
        self,
        records: Installations,
        default: str | None,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.records = records
        self.default = default
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def lookup(self, kind: str, account: str, *, fallback: bool) -> str | None:
        """The token of ``account``'s record of ``kind``; without one, ``default`` when
        ``fallback``, else ``None``.

        Raises:
            SessionError: the store failed (it may heal: the webhook answers 5xx).
        """
        now = self.clock()
        with self._lock:
            cached = self._cache.get((kind, account))
        if cached is not None and cached[1] > now:
            return cached[0]
        value = self.records.get(kind, account)
        found = value.get("token") if isinstance(value, dict) else None
        token = found if isinstance(found, str) and found else None
        if token is None and fallback:
            token = self.default
        with self._lock:
            self._cache[(kind, account)] = (token, now + self.ttl)
        return token

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
