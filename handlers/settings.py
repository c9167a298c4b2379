"""Settings from the environment, read once into a frozen value.

Inside Lambda a missing secret fails the cold start with the variable's name; outside it
(tests, the local server) secrets may be absent until a path needs them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(RuntimeError):
    """A required setting is missing or invalid; the message names the variable."""


#: The bot scopes asked at install when ``SLACK_SCOPES`` is unset (``assistant:write``: the
#: assistant pane's status, prompts and title).
DEFAULT_SLACK_SCOPES = "commands,chat:write,im:history,app_mentions:read,assistant:write"


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
    idle_ttl: int | None = None
    event_ttl: int | None = None
    response_ttl: int | None = None
    dead_letter_ttl: int | None = None
    max_attempts: int | None = None
    sent_mark: bool = False
    kms_key_id: str | None = None
    kms_old_key_ids: str = ""
    encryption_key: str | None = None
    encryption_old_keys: str = ""
    large_state_bucket: str | None = None
    large_state_dir: str | None = None
    large_state_above: int | None = None
    #: Refuse values stored in clear when encryption is on (``SESSIONS_REQUIRE_SEALED``).
    require_sealed: bool = False
    #: JSON turn logs and EMF metrics (``SESSIONS_TELEMETRY``; default: inside Lambda only).
    telemetry: bool = False
    #: The SQS FIFO queue of turns handed off busy (``SESSIONS_SERIAL_QUEUE_URL``): one scope's
    #: turns run one at a time; unset outside the deploy (a thread per busy scope instead).
    serial_queue_url: str | None = None
    #: Slack OAuth (any number of workspaces): ``SLACK_CLIENT_ID`` turns it on.
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    #: Bot scopes asked at install (``SLACK_SCOPES``, comma-separated), and user scopes.
    slack_scopes: str = DEFAULT_SLACK_SCOPES
    slack_user_scopes: str = ""
    #: Where Slack sends the installer back (``SLACK_REDIRECT_URI``; default: this host's
    #: ``/slack/oauth_redirect``).
    slack_redirect_uri: str | None = None
    #: Slack's authorize page (``SLACK_AUTHORIZE_URL``; the local server points it at a fake).
    slack_authorize_url: str = "https://slack.com/oauth/v2/authorize"
    #: Timers in the deploy: EventBridge Scheduler's schedule group (``SESSIONS_TIMER_GROUP``),
    #: the functions its schedules invoke (``SESSIONS_TIMER_SLACK_ARN``,
    #: ``SESSIONS_TIMER_MESSENGER_ARN``, ``SESSIONS_TIMER_WHATSAPP_ARN``: a timer fires in its
    #: platform's function), the role
    #: they invoke them with (``SESSIONS_TIMER_ROLE_ARN``) and their dead-letter queue
    #: (``SESSIONS_TIMER_DLQ_ARN``). Unset: the local SQLite scheduler.
    timer_group: str | None = None
    timer_slack_arn: str | None = None
    timer_messenger_arn: str | None = None
    #: Every platform's function a timer fires in (``SESSIONS_TIMER_<PLATFORM>_ARN``).
    timer_targets: Mapping[str, str] = field(default_factory=dict)
    timer_role_arn: str | None = None
    timer_dead_letter_arn: str | None = None
    #: The local scheduler's SQLite file (``SESSIONS_TIMERS_DB``; default the sessions' file).
    timers_db: str | None = None

    @property
    def slack_oauth(self) -> bool:
        """Whether the app serves many workspaces (OAuth) rather than one bot token."""
        return self.slack_client_id is not None

    def session_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`sessions.Sessions`: only what the environment set."""
        options: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("idle_ttl", "event_ttl", "response_ttl", "dead_letter_ttl", "max_attempts")
            if getattr(self, name) is not None
        }
        if self.sent_mark:
            options["sent_mark"] = True
        if self.require_sealed:
            options["require_sealed"] = True
        return options

    @property
    def in_lambda(self) -> bool:
        return self.lambda_function_name is not None

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every listed setting that is empty."""
        missing = [n.upper() for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError(f"missing required environment variable(s): {', '.join(missing)}")


#: Session options from the environment: variable, ``Sessions`` argument, smallest value.
SESSION_VARIABLES = (
    ("SESSIONS_IDLE_TTL", "idle_ttl", 60),
    ("SESSIONS_EVENT_TTL", "event_ttl", 3600),
    ("SESSIONS_RESPONSE_TTL", "response_ttl", 1),
    ("SESSIONS_DEAD_LETTER_TTL", "dead_letter_ttl", 3600),
    ("SESSIONS_MAX_ATTEMPTS", "max_attempts", 1),
    ("SESSIONS_LARGE_STATE_ABOVE", "large_state_above", 1024),
)
TRUE = ("1", "true", "yes", "on")
FALSE = ("", "0", "false", "no", "off")


def _session_values(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for variable, name, smallest in SESSION_VARIABLES:
        text = (env.get(variable) or "").strip()
        if not text:
            continue
        if not text.isdecimal() or int(text) < smallest:
            raise ConfigError(f"{variable}={text!r}: expected a whole number >= {smallest}")
        values[name] = int(text)
    mark = (env.get("SESSIONS_SENT_MARK") or "").strip().lower()
    if mark not in TRUE + FALSE:
        raise ConfigError(f"SESSIONS_SENT_MARK={mark!r}: expected true or false")
    values["sent_mark"] = mark in TRUE
    return values


def _switch(env: Mapping[str, str], variable: str, *, default: bool) -> bool:
    text = (env.get(variable) or "").strip().lower()
    if not text:
        return default
    if text not in TRUE + FALSE:
        raise ConfigError(f"{variable}={text!r}: expected on or off")
    return text in TRUE


_TIMER_TARGET = re.compile(r"SESSIONS_TIMER_([A-Z][A-Z0-9]*)_ARN")


def _timer_targets(env: Mapping[str, str]) -> dict[str, str]:
    """``SESSIONS_TIMER_<PLATFORM>_ARN`` (set) -> {platform: the function's ARN}: the role's
    ARN is not a platform's."""
    found = {}
    for name, value in env.items():
        match = _TIMER_TARGET.fullmatch(name)
        if match and value and match.group(1) not in ("ROLE", "DLQ"):
            found[match.group(1).lower()] = value
    return found


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """The settings, read once.

    Raises:
        ConfigError: a session option is not a number in range (the message names it).
    """
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
        kms_key_id=env.get("SESSIONS_KMS_KEY_ID") or None,
        kms_old_key_ids=env.get("SESSIONS_KMS_OLD_KEY_IDS") or "",
        encryption_key=env.get("SESSIONS_ENCRYPTION_KEY") or None,
        encryption_old_keys=env.get("SESSIONS_ENCRYPTION_OLD_KEYS") or "",
        large_state_bucket=env.get("SESSIONS_LARGE_STATE_BUCKET") or None,
        large_state_dir=env.get("SESSIONS_LARGE_STATE_DIR") or None,
        serial_queue_url=env.get("SESSIONS_SERIAL_QUEUE_URL") or None,
        slack_client_id=env.get("SLACK_CLIENT_ID") or None,
        slack_client_secret=env.get("SLACK_CLIENT_SECRET") or None,
        slack_scopes=env.get("SLACK_SCOPES") or DEFAULT_SLACK_SCOPES,
        slack_user_scopes=env.get("SLACK_USER_SCOPES") or "",
        slack_redirect_uri=env.get("SLACK_REDIRECT_URI") or None,
        slack_authorize_url=env.get("SLACK_AUTHORIZE_URL")
        or "https://slack.com/oauth/v2/authorize",
        timer_group=env.get("SESSIONS_TIMER_GROUP") or None,
        timer_slack_arn=env.get("SESSIONS_TIMER_SLACK_ARN") or None,
        timer_messenger_arn=env.get("SESSIONS_TIMER_MESSENGER_ARN") or None,
        timer_targets=_timer_targets(env),
        timer_role_arn=env.get("SESSIONS_TIMER_ROLE_ARN") or None,
        timer_dead_letter_arn=env.get("SESSIONS_TIMER_DLQ_ARN") or None,
        timers_db=env.get("SESSIONS_TIMERS_DB") or None,
        telemetry=_switch(
            env, "SESSIONS_TELEMETRY", default=bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        ),
        require_sealed=_switch(env, "SESSIONS_REQUIRE_SEALED", default=False),
        **_session_values(env),
    )
