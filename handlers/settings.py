"""Settings from the environment, read once into a frozen value.

Inside Lambda a missing secret fails the cold start with the variable's name; outside it
(tests, the local server) secrets may be absent until a path needs them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(RuntimeError):
    """A required setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    slack_signing_secret: str | None
    slack_bot_token: str | None
    slack_api_url: str
    messenger_app_secret: str | None
    messenger_verify_token: str | None
    messenger_page_token: str | None
    messenger_api_url: str
    sessions_table: str | None
    sessions_db: str
    lambda_function_name: str | None
    bot: str | None = None

    @property
    def in_lambda(self) -> bool:
        return self.lambda_function_name is not None

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every listed setting that is empty."""
        missing = [n.upper() for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError(f"missing required environment variable(s): {', '.join(missing)}")


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    version = env.get("MESSENGER_GRAPH_VERSION") or "v25.0"
    slack_api = env.get("SLACK_API_URL") or "https://slack.com/api/"
    return Settings(
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
        slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
        slack_api_url=slack_api if slack_api.endswith("/") else slack_api + "/",
        messenger_app_secret=env.get("MESSENGER_APP_SECRET") or None,
        messenger_verify_token=env.get("MESSENGER_VERIFY_TOKEN") or None,
        messenger_page_token=env.get("MESSENGER_PAGE_TOKEN") or None,
        messenger_api_url=(
            env.get("MESSENGER_API_URL") or f"https://graph.facebook.com/{version}"
        ).rstrip("/"),
        sessions_table=env.get("SESSIONS_TABLE") or None,
        sessions_db=env.get("SESSIONS_DB") or ".data/sessions.sqlite3",
        lambda_function_name=env.get("AWS_LAMBDA_FUNCTION_NAME") or None,
        bot=env.get("BOT") or None,
    )
