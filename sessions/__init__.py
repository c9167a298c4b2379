"""Conversation sessions for Slack and Messenger bots: exactly-once turns on SQLite or DynamoDB.

Importing this package is cheap (standard library only); boto3 is loaded by
:mod:`sessions.dynamodb` when a DynamoDB store is built.
"""

from __future__ import annotations

from sessions.errors import (
    BusyError,
    CodecError,
    ConflictError,
    DuplicateEventError,
    InvalidKeyError,
    ItemTooLargeError,
    PermanentError,
    SessionError,
    StateTooLargeError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
    TurnError,
)
from sessions.keys import ConversationKey, UserKey
from sessions.outcomes import NOTHING
from sessions.runner import Conversation, Sender, Sessions, Turn, TurnReport, TurnResult

__all__ = [
    "NOTHING",
    "BusyError",
    "CodecError",
    "ConflictError",
    "Conversation",
    "ConversationKey",
    "DuplicateEventError",
    "InvalidKeyError",
    "ItemTooLargeError",
    "PermanentError",
    "Sender",
    "SessionError",
    "Sessions",
    "StateTooLargeError",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailableError",
    "Turn",
    "TurnError",
    "TurnReport",
    "TurnResult",
    "UserKey",
]
