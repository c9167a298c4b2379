"""What happens to a value between the turn and the store: the codec (compact, compressed),
then sealing (envelope encryption bound to the conversation and the value's role), then, for
a state past the threshold, the large-state store (S3 or a directory) with a pointer in the
item. Reading runs the same steps backwards and refuses what does not belong (a pointer moved
to another user, a changed object, a value sealed for another conversation or role, a clear
value where sealed ones are required).
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from sessions import blobs, codec
from sessions.blobs import BlobStore
from sessions.encryption import DecryptError, Envelope, sealed
from sessions.errors import CodecError, StateTooLargeError
from sessions.keys import ConversationKey

#: What a stored value is (part of what an encrypted value is bound to).
STATE, RESPONSE, OUTBOX, PAYLOAD, ERROR = "state", "response", "outbox", "payload", "error"
#: A record outside any conversation (an installation, a page's token).
RECORD = "record"
#: Between a dead letter's error classes (in clear) and its sealed description.
SEALED = " sealed:"


def aad(pk: str, sk: str, kind: str) -> bytes:
    """What a sealed value is bound to: its user, its conversation and its role."""
    return f"{pk}\0{sk}\0{kind}".encode()


class Sealing:
    """Encode and decode stored values for one :class:`~sessions.Sessions`.

    Args:
        encryption: seals every value (``None``: values are stored in clear).
        require_sealed: refuse a value stored in clear (with ``encryption`` only).
        large: where a state past ``large_above`` bytes goes (``None``: it must fit the item).
        large_above: the threshold, in bytes (after the codec and sealing).
        max_large_state: the largest state ``large`` takes.
    """

    def __init__(
        self,
        *,
        encryption: Envelope | None,
        require_sealed: bool,
        large: BlobStore | None,
        large_above: int,
        max_large_state: int,
    ) -> None:
        self.encryption = encryption
        self.require_sealed = require_sealed and encryption is not None
        self.large = large
        self.large_above = large_above
        self.max_large_state = max_large_state
        self._io = threading.local()  # large-state reads and writes of this thread's turn

    # -- the turn's counters -------------------------------------------------------------------

    def reset_io(self) -> None:
        self._io.reads = self._io.writes = 0

    @property
    def reads(self) -> int:
        """Large-state objects read on this thread since :meth:`reset_io`."""
        return int(getattr(self._io, "reads", 0))

    @property
    def writes(self) -> int:
        """Large-state objects written on this thread since :meth:`reset_io`."""
        return int(getattr(self._io, "writes", 0))

    # -- writing -----------------------------------------------------------------------------------

    def encode(
        self, value: Any, key: ConversationKey, kind: str, *, limit: int = codec.MAX_STATE_BYTES
    ) -> bytes:
        """``value`` as stored. A large state is written to the large-state store *before*
        the commit, under its content's name: until the commit points at it, the object is
        invisible (a crash or a lost race leaves an orphan the lifecycle removes).

        Raises:
            CodecError, StateTooLargeError: not encodable, or too large even so.
        """
        large = self.large if kind == STATE else None
        if large is not None:
            limit = self.max_large_state
        blob = codec.encode(value, limit=limit)
        if self.encryption is not None:
            blob = self.encryption.seal(blob, aad=aad(key.pk, key.sk, kind))
            if len(blob) > limit:
                raise StateTooLargeError(
                    f"encrypted {kind} is {len(blob)} bytes; at most {limit} are kept",
                    size=len(blob),
                    limit=limit,
                )
        if large is None or len(blob) <= self.large_above:
            return blob
        name = blobs.name_for(key.pk, blob)
        large.put(name, blob)
        self._io.writes = self.writes + 1
        return blobs.POINTER + name.encode()

    def encode_record(self, value: Any, pk: str, sk: str) -> bytes:
        """A record kept outside any conversation (a page's token, an installation), sealed
        to its own key when encryption is on (never in the large-state store).

        Raises:
            CodecError, StateTooLargeError: not encodable, or too large.
        """
        blob = codec.encode(value)
        if self.encryption is not None:
            blob = self.encryption.seal(blob, aad=aad(pk, sk, RECORD))
        return blob

    def describe(self, classes: str, description: str, key: ConversationKey) -> str:
        """A dead letter's error description as stored: sealed (it may quote the user) after
        its error classes in clear, when encryption is on."""
        if self.encryption is None:
            return description
        text = self.encode(description, key, ERROR)
        return classes + SEALED + base64.b64encode(text).decode()

    # -- reading -----------------------------------------------------------------------------------

    def open(self, blob: bytes, pk: str, sk: str, kind: str) -> bytes:
        """The codec's bytes of a stored value.

        Raises:
            CodecError: a pointer with no large-state store, a moved or changed object, a
                value that does not open (``DecryptError``), or clear where sealed is required.
        """
        if blobs.is_pointer(blob):
            if self.large is None:
                raise CodecError(
                    f"the stored {kind} is in the large-state store, and none is configured "
                    "(SESSIONS_LARGE_STATE_BUCKET or SESSIONS_LARGE_STATE_DIR)"
                )
            name = blobs.pointed(blob, pk)
            blob = blobs.check(name, pk, self.large.get(name))
            self._io.reads = self.reads + 1
        if not sealed(blob):
            if self.require_sealed:
                # Whoever can write the table could plant state: refused, never re-sealed.
                raise DecryptError(f"the stored {kind} is in clear and sealed values are required")
            return blob  # stored in clear (before encryption was turned on)
        if self.encryption is None:
            raise DecryptError(
                f"the stored {kind} is encrypted and no key is configured "
                "(SESSIONS_KMS_KEY_ID or SESSIONS_ENCRYPTION_KEY)"
            )
        return self.encryption.open(blob, aad=aad(pk, sk, kind))

    def decode(self, blob: bytes, pk: str, sk: str, kind: str) -> Any:
        return codec.decode(self.open(blob, pk, sk, kind))

    def decoded(self, blob: bytes | None, pk: str, sk: str, kind: str) -> Any:
        """For export: the value, or why it does not decode."""
        if blob is None:
            return None
        try:
            return self.decode(blob, pk, sk, kind)
        except CodecError as exc:
            return {"undecodable": str(exc)}

    def error_text(self, error: str | None, pk: str, sk: str) -> str | None:
        """A dead letter's error description, opened when it was sealed (its classes alone,
        saying so, when it cannot be)."""
        if error is None or SEALED not in error:
            return error
        classes, _, text = error.partition(SEALED)
        try:
            opened = self.decode(base64.b64decode(text, validate=True), pk, sk, ERROR)
        except (CodecError, ValueError):
            return f"{classes} (description sealed; cannot open it here)"
        return opened if isinstance(opened, str) else classes
