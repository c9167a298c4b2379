"""Records kept outside any conversation: a Facebook Page's or an Instagram account's access
token, a Slack installation, a one-time OAuth state. Sealed like everything else the sessions
store (envelope encryption bound to the record's own key, when encryption is on), in the same
table, under keys no conversation can have::

    pk                              sk
    install#<kind>#<id>             install      the record (sealed), its expiry
    install#<kind>#<id>             <part>       one part of a record kept in several (a Slack
                                                 installation: ``bot``, ``latest``, ``user#<id>``)

``kind`` names what it is (``messenger-page``, ``instagram-account``, ...), ``id`` whose it is
(the page id). A platform's partition keys start with the platform's name, never with
``install``, so no user or channel can address a record. The parts of one id share its
partition: :meth:`Installations.parts` lists them with one ``Query``, and
:meth:`Installations.delete_every` removes them all without a scan.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from sessions.errors import CodecError, InvalidKeyError
from sessions.privacy import fingerprint, private
from sessions.sealing import RECORD, Sealing
from sessions.store import Store

log = private(logging.getLogger("sessions.installations"))

SK = "install"
#: A record without an expiry of its own lives this long (DynamoDB's TTL needs a time).
FOREVER = 10 * 365 * 86_400
_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")
_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_PART = re.compile(r"[A-Za-z0-9_.#-]{1,160}")


def record_pk(kind: str, ident: str) -> str:
    """The partition key of a record, its parts validated.

    Raises:
        InvalidKeyError: a kind or an id outside its alphabet.
    """
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise InvalidKeyError(f"invalid record kind {str(kind)[:40]!r}")
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise InvalidKeyError(f"invalid record id {str(ident)[:40]!r}: expected {_ID.pattern}")
    return f"install#{kind}#{ident}"


def _part(part: str) -> str:
    if not isinstance(part, str) or not _PART.fullmatch(part):
        raise InvalidKeyError(f"invalid record part {str(part)[:40]!r}: expected {_PART.pattern}")
    return part


class Installations:
    """Sealed records by kind and id, over a :class:`~sessions.store.Store`."""

    def __init__(
        self, store: Store, sealing: Sealing, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.sealing = sealing
        self.clock = clock

    def put(
        self, kind: str, ident: str, value: Any, *, ttl: int | None = None, part: str = SK
    ) -> None:
        """Keep ``value`` (JSON-compatible) as the record of ``kind`` for ``ident`` (its
        ``part``), replacing the one there; ``ttl``: seconds it lives (default: until
        deleted)."""
        pk, sk = record_pk(kind, ident), _part(part)
        blob = self.sealing.encode_record(value, pk, sk)
        expires = int(self.clock()) + (FOREVER if ttl is None else ttl)
        self.store.put_record(pk, sk, blob, expires_at=expires)

    def create(self, kind: str, ident: str, value: Any, *, ttl: int, part: str = SK) -> bool:
        """Keep ``value`` only if no live record is there: whether this caller did (of
        racing creators exactly one does; a lock that expires after ``ttl`` seconds)."""
        pk, sk = record_pk(kind, ident), _part(part)
        blob = self.sealing.encode_record(value, pk, sk)
        now = int(self.clock())
        return self.store.create_record(pk, sk, blob, expires_at=now + ttl, now=now)

    def parts(self, kind: str, ident: str) -> list[str]:
        """The parts kept for ``ident`` (expired ones included until they are removed)."""
        return self.store.record_parts(record_pk(kind, ident))

    def delete_every(self, kind: str, ident: str) -> int:
        """Delete every part kept for ``ident``; how many there were."""
        pk = record_pk(kind, ident)
        return sum(self.store.delete_record(pk, sk) is not None for sk in self.parts(kind, ident))

    def get(self, kind: str, ident: str, *, part: str = SK) -> Any:
        """The record's value, ``None`` when there is none, it expired, or it does not open
        (another key, a planted value, clear where sealed values are required: logged by
        class). Not opening would recur on every read, so it is no error that may heal: a
        webhook that raised it would answer 5xx to every redelivery.
        """
        pk, sk = record_pk(kind, ident), _part(part)
        found = self.store.get_record(pk, sk)
        if found is None or found[1] <= self.clock():
            return None
        return self._open(found[0], pk, sk, kind)

    def _open(self, blob: bytes, pk: str, sk: str, kind: str) -> Any:
        try:
            return self.sealing.decode(blob, pk, sk, RECORD)
        except CodecError as exc:
            log.error(
                "a %s record does not open (%s); treated as absent (store it again)",
                kind,
                type(exc).__name__,
                extra={"record": fingerprint(pk)},
            )
            return None

    def delete(self, kind: str, ident: str, *, part: str = SK) -> bool:
        """Delete the record; whether there was one."""
        return self.store.delete_record(record_pk(kind, ident), _part(part)) is not None

    def take(self, kind: str, ident: str, *, part: str = SK) -> Any:
        """Delete the record and return its value, once: of racing takers exactly one gets it
        (``None`` for the others, and for an expired record)."""
        pk, sk = record_pk(kind, ident), _part(part)
        found = self.store.delete_record(pk, sk)
        if found is None or found[1] <= self.clock():
            return None
        return self._open(found[0], pk, sk, kind)
