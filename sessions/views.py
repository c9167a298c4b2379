"""What the admin tools see of the sessions: one conversation, a user's conversations, dead
letters and export, and the user delete (the right to erasure). Mixed into
:class:`~sessions.Sessions`, beside the turn.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sessions import blobs
from sessions.errors import CodecError, StoreUnavailableError
from sessions.keys import (
    EVENT_MARK,
    ConversationKey,
    Partition,
    UserKey,
    conversation_from_item,
)
from sessions.privacy import fingerprint, private
from sessions.schedules import Scheduler, partition_prefix, workspace_prefix
from sessions.sealing import OUTBOX, PAYLOAD, RESPONSE, STATE, Sealing
from sessions.store import (
    EventRecord,
    Store,
    StoredState,
    Tombstone,
    live,
    live_tombstone,
    pre_delete,
    tombstone_of,
    workspace_pk,
)

log = private(logging.getLogger("sessions"))
#: A closed workspace's stone lives this long unless it is installed again (then as long as a
#: user's tombstone): DynamoDB's TTL needs a time.
CLOSED_FOR = 10 * 365 * 86_400


@dataclass(frozen=True, slots=True)
class Conversation:
    """A stored conversation, as the admin tools and exports show it."""

    key: ConversationKey
    state: Any
    version: int
    updated_at: int
    expires_at: int


def channel_of(event_sk: str) -> str:
    """The state item's sort key in an event record's (``[<namespace>:]<channel>#evt#<hash>``,
    ``[<namespace>:]~user#evt#<hash>``)."""
    return event_sk.split(EVENT_MARK, 1)[0]


class Views:
    """Reading and deleting a user's records (needs the attributes below, which
    :class:`~sessions.Sessions` sets)."""

    store: Store
    _store: Store
    sealing: Sealing
    tombstone_ttl: int
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    #: Where timers wait (``None``: no timers): a delete cancels the deleted ones'.
    scheduler: Scheduler | None = None

    def _conversation(self, key: ConversationKey, item: StoredState) -> Conversation:
        return Conversation(
            key=key,
            state=self.sealing.decode(item.blob, key.pk, key.sk, STATE),
            version=item.version,
            updated_at=item.updated_at,
            expires_at=item.expires_at,
        )

    # -- reading and user records -----------------------------------------------------------

    def get(self, key: ConversationKey) -> Conversation | None:
        """The live conversation, or ``None`` when absent, expired or deleted."""
        snap = self._store.load(key, None)
        now = int(self.clock())
        if snap.state is None or not live(snap.state, live_tombstone(snap.tombstone, now), now):
            return None
        return self._conversation(key, snap.state)

    def conversations(self, user: Partition) -> list[Conversation]:
        """The user's live conversations (one Query on DynamoDB)."""
        now = int(self.clock())
        items = self.store.user_items(user)
        stone = live_tombstone(tombstone_of(items), now)
        found = []
        for sk, item in items:
            if isinstance(item, StoredState) and live(item, stone, now):
                key = conversation_from_item(user.pk, sk, item.enterprise)
                found.append(self._conversation(key, item))
        return found

    def dead_letters(
        self, user: Partition, *, unopened: list[str] | None = None
    ) -> list[tuple[str, EventRecord]]:
        """The user's unexpired dead letters as ``(sort key, record)`` (one Query); a record's
        ``payload`` is opened (decrypted) for :func:`sessions.codec.decode`.

        Every dead letter is listed: one whose payload does not open (a key no longer
        configured, a damaged or planted value) comes with ``payload=None``, and its sort key
        is appended to ``unopened`` with the reason's class.
        """
        now = int(self.clock())
        letters = []
        for sk, item in self.store.user_items(user):
            if not (isinstance(item, EventRecord) and item.failed and item.expires_at > now):
                continue
            payload = item.payload
            if payload:
                try:
                    payload = self.sealing.open(payload, user.pk, channel_of(sk), PAYLOAD)
                except CodecError as exc:
                    payload = None
                    if unopened is not None:
                        unopened.append(f"{sk}: {type(exc).__name__}")
            error = self.sealing.error_text(item.error, user.pk, channel_of(sk))
            letters.append((sk, dataclasses.replace(item, payload=payload, error=error)))
        return letters

    def export(self, user: Partition) -> dict[str, Any]:
        """Everything stored for the user, as JSON-compatible data (one Query on DynamoDB).

        Nothing is left out: items that the rest of the API no longer shows are included and
        say why, ``"expired": true`` (past their expiry, waiting for DynamoDB's TTL sweep) or
        ``"deleted": true`` (older than a user delete that is still removing them).
        """
        now = int(self.clock())
        items = self.store.user_items(user)
        stone = live_tombstone(tombstone_of(items), now)
        conversations: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        tombstone: dict[str, Any] | None = None
        for sk, item in items:
            if isinstance(item, StoredState):
                conversations.append(
                    {
                        "channel": sk,
                        "enterprise": item.enterprise,
                        "version": item.version,
                        "updated_at": item.updated_at,
                        "expires_at": item.expires_at,
                        "expired": item.expires_at <= now,
                        "deleted": pre_delete(item.generation, stone),
                        "state": self.sealing.decoded(item.blob, user.pk, sk, STATE),
                    }
                )
            elif isinstance(item, EventRecord):
                channel = channel_of(sk)
                events.append(
                    {
                        "sk": sk,
                        "status": item.status,
                        "error": self.sealing.error_text(item.error, user.pk, channel),
                        "version": item.version,
                        "committed_at": item.committed_at,
                        "expires_at": item.expires_at,
                        "expired": item.expires_at <= now,
                        "deleted": pre_delete(item.generation, stone),
                        "response": self.sealing.decoded(item.response, user.pk, channel, RESPONSE),
                        "replies": self.sealing.decoded(item.outbox, user.pk, channel, OUTBOX),
                        "sent_at": item.sent_at,
                        "payload": self.sealing.decoded(item.payload, user.pk, channel, PAYLOAD),
                    }
                )
            else:
                tombstone = {
                    "deleted_at": item.deleted_at,
                    "expires_at": item.expires_at,
                    "expired": item.expires_at <= now,
                }
        return {
            "user": user.pk,
            "platform": user.platform,
            "exported_at": now,
            "conversations": conversations,
            "events": events,
            "tombstone": tombstone,
        }

    def delete_user(self, user: UserKey, *, settle: float = 0.0) -> int:
        """Delete everything stored for the user and leave a short-lived tombstone.

        A late redelivery of an event that happened before this call is then ignored instead
        of recreating the user's data, and a turn in flight cannot commit pre-delete state
        back. The delete's time is kept in milliseconds and compared with each event's time
        at its platform's resolution. Returns how many items were deleted (large-state objects,
        also deleted, are not counted).

        A turn in flight during the delete may still write what it writes *before* its commit
        (a large state's object, a busy conversation's page of event records) after the delete
        has removed everything: its commit then fails, and what it wrote is unreachable, but
        it is there. ``settle``: wait that long (the longest a turn can still be running: the
        function's timeout) and delete again under the same tombstone, which removes exactly
        those leftovers and nothing written since by genuine new events.

        Raises:
            StoreUnavailableError: the user's data is deleted, but their timers' schedules
                could not be (after retries): run the delete again (it is idempotent).
        """
        now = self.clock()
        stone = Tombstone(generation=int(now * 1000), expires_at=int(now) + self.tombstone_ttl)
        deleted, objects = self._delete_once(user, stone)
        prefix = partition_prefix(user.platform, user.workspace, user.pk)
        cancelled = self._cancel_timers(prefix)
        if settle > 0:
            self.sleep(settle)
            more, more_objects = self._delete_once(user, stone)
            deleted, objects = deleted + more, objects + more_objects
        if not cancelled:
            self._cancel_timers(prefix, last=True)
        log.info(
            "user deleted",
            extra={"user": fingerprint(user.pk), "items": deleted, "objects": objects},
        )
        return deleted

    def close_workspace(self, platform: str, workspace: str) -> int:
        """Close a workspace (its app was uninstalled): a stone that refuses the creation of
        any conversation of it (the creating commit checks it) until :meth:`reopen_workspace`,
        and that each container's token cache reads (``workspace_closed``). Returns the
        stone's generation (the close's time in milliseconds), for the erase and its settle
        pass."""
        now = self.clock()
        generation = int(now * 1000)
        self.store.close_workspace(
            workspace_pk(platform, workspace),
            generation=generation,
            expires_at=int(now) + CLOSED_FOR,
        )
        return generation

    def reopen_workspace(self, platform: str, workspace: str) -> None:
        """Installed again: conversations may be created again, except by events at or
        before the uninstall (for as long as a user's tombstone lives)."""
        self.store.reopen_workspace(
            workspace_pk(platform, workspace), expires_at=int(self.clock()) + self.tombstone_ttl
        )

    def workspace_closed(self, platform: str, workspace: str) -> bool:
        """Whether the workspace is closed (uninstalled and not installed again): one read."""
        stone = self.store.workspace_stone(workspace_pk(platform, workspace))
        return stone is not None and stone.closed and stone.expires_at > self.clock()

    def erase_workspace(
        self, platform: str, workspace: str, *, settle: float = 0.0, generation: int | None = None
    ) -> int:
        """Delete everything stored for a workspace (an uninstalled Slack app's, say): every
        partition of its users and channels, each as a user delete (a tombstone, so that a
        late redelivery of an older event recreates nothing). The partitions are found by the
        workspace's index (``Store.workspace_partitions``), never by a scan. Returns how many
        items were deleted. ``generation``: the tombstones' (default: now); the settle pass
        of an uninstall's erase runs again with the first pass's, so that it removes what
        turns in flight wrote before their commit failed, and nothing written since by a new
        installation's events."""
        from sessions.keys import partition_from_pk

        now = self.clock()
        stone = Tombstone(
            generation=int(now * 1000) if generation is None else generation,
            expires_at=int(now) + self.tombstone_ttl,
        )
        partitions = self.store.workspace_partitions(platform, workspace)
        deleted = 0
        for pk in partitions:
            deleted += self._delete_once(partition_from_pk(pk), stone)[0]
        self._cancel_timers(workspace_prefix(platform, workspace), last=True)
        if settle > 0:
            # Again, found again: the index is eventually consistent (a partition created in
            # the second before the erase may show only now), and turns in flight finish.
            self.sleep(settle)
            for pk in self.store.workspace_partitions(platform, workspace):
                deleted += self._delete_once(partition_from_pk(pk), stone)[0]
        log.info(
            "workspace erased",
            extra={
                "workspace": fingerprint(f"{platform}#{workspace}"),
                "items": deleted,
                "partitions": len(partitions),
            },
        )
        return deleted

    def _cancel_timers(self, prefix: str, *, last: bool = False) -> bool:
        """Delete the schedules of what was deleted (tried three times). Their fires would
        find no timer and delete their schedules then, but a recurring one costs an
        invocation and a read per occurrence until it does, and a delete must leave nothing
        of the user. Whether they went; ``last``: raise when they did not.

        Raises:
            StoreUnavailableError: ``last``, and the scheduler kept failing."""
        if self.scheduler is None:
            return True
        failure: Exception | None = None
        for attempt in range(3):
            try:
                cancelled = self.scheduler.delete_prefix(prefix)
            except Exception as exc:
                failure = exc
                log.warning("could not cancel the deleted timers' schedules (%s)",
                            type(exc).__name__)  # fmt: skip
                if attempt < 2:
                    self.sleep(0.2 * 2**attempt)
                continue
            if cancelled:
                log.info("timers cancelled", extra={"timers": cancelled})
            return True
        if last:
            raise StoreUnavailableError(
                "the data is deleted, but the timers' schedules could not be cancelled "
                f"({type(failure).__name__}): run the delete again"
            ) from failure
        return False

    def _delete_once(self, user: Partition, stone: Tombstone) -> tuple[int, int]:
        deleted = self.store.delete_user(user, tombstone=stone)
        objects = 0
        if self.sealing.large is not None:  # after the tombstone: nothing can point at them again
            objects = self.sealing.large.delete_prefix(blobs.user_prefix(user.pk))
        return deleted, objects
