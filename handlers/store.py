"""Build the session store the settings select: DynamoDB when SESSIONS_TABLE is set, else the
embedded SQLite file SESSIONS_DB (outside Lambda only: inside it a missing SESSIONS_TABLE is a
configuration error, not a silent SQLite file on a read-only, per-container disk)."""

from __future__ import annotations

from typing import Any

from handlers.settings import ConfigError, Settings
from sessions import Sessions
from sessions.blobs import BlobStore, DirectoryBlobs, S3Blobs
from sessions.encryption import Envelope, KMSKeyring, LocalKeyring
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


def encryption_from_settings(settings: Settings) -> Envelope | None:
    """Envelope encryption under ``SESSIONS_KMS_KEY_ID`` (a KMS key ARN; the deploy sets it)
    or, locally, ``SESSIONS_ENCRYPTION_KEY`` (32 bytes in base64); ``None`` when neither is
    set. ``SESSIONS_KMS_OLD_KEY_IDS`` / ``SESSIONS_ENCRYPTION_OLD_KEYS`` (comma-separated)
    still open what retired keys sealed.

    Raises:
        ConfigError: both are set, or the local key is not 32 bytes of base64.
    """
    if settings.kms_key_id and settings.encryption_key:
        raise ConfigError("set SESSIONS_KMS_KEY_ID or SESSIONS_ENCRYPTION_KEY, not both")
    if settings.kms_key_id:
        old = [k.strip() for k in settings.kms_old_key_ids.split(",") if k.strip()]
        return Envelope(KMSKeyring(settings.kms_key_id, readable=old))
    if settings.encryption_key:
        try:
            keyring = LocalKeyring.from_text(
                settings.encryption_key, old=settings.encryption_old_keys
            )
        except ValueError as exc:
            raise ConfigError(f"SESSIONS_ENCRYPTION_KEY (or _OLD_KEYS): {exc}") from None
        return Envelope(keyring)
    return None


def large_state_from_settings(settings: Settings) -> BlobStore | None:
    """Where states too large for their item go: the S3 bucket
    ``SESSIONS_LARGE_STATE_BUCKET`` (the deploy sets it), else the directory
    ``SESSIONS_LARGE_STATE_DIR``, else, for the embedded SQLite store, ``<SESSIONS_DB>.large/``
    next to the database; ``None`` (states must fit in their item) on DynamoDB without a
    bucket."""
    if settings.large_state_bucket:
        return S3Blobs(settings.large_state_bucket)
    if settings.large_state_dir:
        return DirectoryBlobs(settings.large_state_dir)
    if not settings.sessions_table and settings.sessions_db != ":memory:":
        return DirectoryBlobs(settings.sessions_db + ".large")
    return None


def sessions_from_settings(
    settings: Settings, store: Store | None = None, **options: Any
) -> Sessions:
    """The session runner the environment configures: its store, session options,
    encryption and timers' scheduler (``options`` override them)."""
    from handlers.pipeline.timers import scheduler_from_settings

    if "scheduler" not in options:
        options["scheduler"] = scheduler_from_settings(settings)
    return Sessions(
        store if store is not None else store_from_settings(settings),
        **{
            **settings.session_options(),
            "encryption": encryption_from_settings(settings),
            "large": large_state_from_settings(settings),
            **(
                {"large_above": settings.large_state_above}
                if settings.large_state_above is not None
                else {}
            ),
            **options,
        },
    )
