"""Build the session store the settings select: DynamoDB when SESSIONS_TABLE is set, else the
embedded SQLite file SESSIONS_DB."""

from __future__ import annotations

from handlers.settings import Settings
from sessions.store import Store


def store_from_settings(settings: Settings) -> Store:
    if settings.sessions_table:
        from sessions.dynamodb import DynamoDBStore

        # boto3 honours AWS_ENDPOINT_URL_DYNAMODB (DynamoDB Local) on its own.
        return DynamoDBStore(settings.sessions_table)
    from sessions.sqlite import SQLiteStore

    return SQLiteStore(settings.sessions_db)
