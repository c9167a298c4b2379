"""The WhatsApp adapter's settings, read once from the environment into a frozen value.

``WHATSAPP_APP_SECRET`` (the Meta app's secret: ``X-Hub-Signature-256``),
``WHATSAPP_VERIFY_TOKEN`` (the webhook's verification handshake), ``WHATSAPP_TOKEN`` (the
token of every phone number without one of its own: ``make admin ARGS="add-page <id>
--whatsapp"``), ``WHATSAPP_API_URL`` (the Graph base, default
``https://graph.facebook.com/$WHATSAPP_GRAPH_VERSION``, version default ``v25.0``) and
``WHATSAPP_EVENT_TTL`` (seconds an event id is remembered; at least :data:`RECORD_TTL`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from handlers.settings import ConfigError

DAY = 86_400
#: Meta redelivers a webhook it could not deliver with backoff for up to 7 days, so a
#: WhatsApp event's record must outlive its last redelivery: 7 days and an hour (Slack's and
#: Messenger's default is a day). Also how long a user delete's tombstone must block them.
RECORD_TTL = 7 * DAY + 3600


@dataclass(frozen=True, slots=True)
class WhatsAppSettings:
    app_secret: str | None
    verify_token: str | None
    token: str | None
    api_url: str
    event_ttl: int = RECORD_TTL

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every listed setting (``WHATSAPP_<NAME>``) that is empty."""
        missing = [f"WHATSAPP_{n.upper()}" for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError(f"missing required environment variable(s): {', '.join(missing)}")


def from_env(env: Mapping[str, str] | None = None) -> WhatsAppSettings:
    """The adapter's settings.

    Raises:
        ConfigError: ``WHATSAPP_EVENT_TTL`` is not a whole number of at least
            :data:`RECORD_TTL` seconds (a shorter one would let a redelivery run twice).
    """
    env = os.environ if env is None else env
    version = env.get("WHATSAPP_GRAPH_VERSION") or "v25.0"
    ttl = (env.get("WHATSAPP_EVENT_TTL") or "").strip()
    if ttl and (not ttl.isdecimal() or int(ttl) < RECORD_TTL):
        raise ConfigError(
            f"WHATSAPP_EVENT_TTL={ttl!r}: expected a whole number >= {RECORD_TTL} "
            "(WhatsApp redelivers for up to 7 days)"
        )
    return WhatsAppSettings(
        app_secret=env.get("WHATSAPP_APP_SECRET") or None,
        verify_token=env.get("WHATSAPP_VERIFY_TOKEN") or None,
        token=env.get("WHATSAPP_TOKEN") or None,
        api_url=(env.get("WHATSAPP_API_URL") or f"https://graph.facebook.com/{version}").rstrip(
            "/"
        ),
        event_ttl=int(ttl) if ttl else RECORD_TTL,
    )
