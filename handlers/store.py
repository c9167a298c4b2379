"""Build the session store the settings select: DynamoDB when SESSIONS_TABLE is set, else the
embedded SQLite file SESSIONS_DB (outside Lambda only: inside it a missing SESSIONS_TABLE is a
configuration error, not a silent SQLite file on a read-only, per-container disk)."""

from __future__ import annotations

from handlers.settings import ConfigError, Settings
from sessions.store import Store


def store_from_settings(settings: Settings) -> Store:
    """The store the settings select.

    Raises:
        ConfigError: inside Lambda without ``SESSIONS_TABLE``.
    """
    if settings.in_lambda and not settings.sessions_table:
        raise ConfigError(
            "missing required environment variable(s): SESSIONS_TABLE (inside Lambda the "
            "sessions live in DynamoDB; the embedded SQLite store is for local use)"
        )
    if settings.sessions_table:
        from sessions.dynamodb import DynamoDBStore

        # boto3 honours AWS_ENDPOINT_URL_DYNAMODB (DynamoDB Local) on its own.
        return DynamoDBStore(settings.sessions_table)
    from sessions.sqlite import SQLiteStore

    return SQLiteStore(settings.sessions_db)
