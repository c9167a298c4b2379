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

from handlers.meta import AccountTokens

#: The record kind of each platform's tokens.
KINDS = {"messenger": "messenger-page", "instagram": "instagram-account"}


class PageTokens(AccountTokens):
    """Tokens by platform and page (or Instagram account) id, cached per container."""

    def token(self, platform: str, page: str) -> str | None:
        """The token to answer ``page`` with, ``None`` when there is none (the single-page
        token stands in on Messenger, never for Instagram: another account's token).

        Raises:
            SessionError: the store failed (it may heal: the webhook answers 5xx).
        """
        kind = KINDS.get(platform, "messenger-page")
        return self.lookup(kind, page, fallback=platform == "messenger")
