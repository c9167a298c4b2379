"""Which access token answers a Facebook Page or an Instagram account: one Meta app, one
webhook, many Pages (an agency's clients, a company's brands), each answered with its own
token, kept sealed in the sessions table (``make admin ARGS="add-page <page id>"``).

``MESSENGER_PAGE_TOKEN`` alone is the single-page mode: any page without a token of its own is
answered with it. Without it, a message to a page with no token is logged (the page's hash)
and answered 200 with nothing run: retrying cannot make a token appear, and a 5xx loop would
get the webhook disabled. Tokens are cached per container for ``ttl`` seconds, so a warm turn
of a known page costs no request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sessions.installations import Installations

#: The record kind of each platform's tokens.
KINDS = {"messenger": "messenger-page", "instagram": "instagram-account"}


class PageTokens:
    """Tokens by platform and page (or Instagram account) id, cached per container."""

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

    def token(self, platform: str, page: str) -> str | None:
        """The token to answer ``page`` with, ``None`` when there is none.

        Raises:
            SessionError: the store failed (it may heal: the webhook answers 5xx).
        """
        now = self.clock()
        with self._lock:
            cached = self._cache.get((platform, page))
        if cached is not None and cached[1] > now:
            return cached[0]
        value = self.records.get(KINDS.get(platform, "messenger-page"), page)
        found = value.get("token") if isinstance(value, dict) else None
        token = found if isinstance(found, str) and found else None
        if token is None and platform == "messenger":
            token = self.default  # single-page mode (not for Instagram: another token)
        with self._lock:
            self._cache[(platform, page)] = (token, now + self.ttl)
        return token

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
