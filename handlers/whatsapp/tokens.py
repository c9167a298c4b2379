"""Which access token answers a WhatsApp phone number: one Meta app, one webhook, many business
phone numbers, each answered with its own token, kept sealed in the sessions table (``make
admin ARGS="add-page <phone number id> --whatsapp"``), as Messenger's pages are.

``WHATSAPP_TOKEN`` answers every number without a token of its own. Without it, a message to
a number with no token is logged (the number's hash) and answered 200 with nothing run:
retrying cannot make a token appear. Tokens are cached per container for ``ttl`` seconds,
so a warm turn costs no request; a removed token is refused by every container within it.
"""

from __future__ import annotations

from handlers.meta import AccountTokens

#: The record kind of a phone number's token.
KIND = "whatsapp-number"


class NumberTokens(AccountTokens):
    """Tokens by phone number id, cached per container."""

    def token(self, number: str) -> str | None:
        """The token to answer from ``number`` with (``WHATSAPP_TOKEN`` for a number without
        one of its own), ``None`` when there is none.

        Raises:
            SessionError: the store failed (it may heal: the webhook answers 5xx).
        """
        return self.lookup(KIND, number, fallback=True)
