"""Which access token answers a WhatsApp phone number: one Meta app, one webhook, many business
phone numbers, each answered with its own token, kept sealed in the sessions table (``make
admin ARGS="add-page <phone number id> --whatsapp"``), as Messenger's pages are.

``WHATSAPP_TOKEN`` answers every number without a token of its own. Without it, a message to
a number with no token is logged (the number's hash) and answered 200 with nothing run:
retrying cannot make a token appear. Tokens are cached per container for ``ttl`` seconds,
so a warm turn costs no request; a removed token is refused by every container within it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sessions.installations import Installations

#: The record kind of a phone number's token.
KIND = "whatsapp-number"


class NumberTokens:
    """Tokens by phone number id, cached per container."""

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
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def token(self, number: str) -> str | None:
        """The token to answer from ``number`` with, ``None`` when there is none.

        Raises:
            SessionError: the store failed (it may heal: the webhook answers 5xx).
        """
        now = self.clock()
        with self._lock:
            cached = self._cache.get(number)
        if cached is not None and cached[1] > now:
            return cached[0]
        value = self.records.get(KIND, number)
        found = value.get("token") if isinstance(value, dict) else None
        token = found if isinstance(found, str) and found else self.default
        with self._lock:
            self._cache[number] = (token, now + self.ttl)
        return token

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()
