"""Client-side envelope encryption of what the session core stores (state, recorded
responses, outboxes, dead letters' replay payloads).

A container makes one *data key* (AES-256) under the master key (KMS in the deploy, a key from
the environment locally) and caches it: sealing a value is then local AES-GCM, no request. The
data key travels with every value it sealed, wrapped by the master key, so any container can
open it: unwrapping costs one KMS ``Decrypt`` per data key per container (cached), never one
per turn on a warm container. Rotation: a container makes a fresh data key after
``data_key_ttl``; values sealed under older data keys, or under a retired master key listed in
``readable``, still open.

Layout of a sealed value (the store sees opaque bytes)::

    b"e" | 0x01 | len(key id):u8 | key id | len(wrapped):u16 | wrapped data key
         | nonce (12) | AES-GCM(data key, nonce, inner blob, aad) (ciphertext + 16-byte tag)

``aad`` (associated data) is the conversation's key and what the value is (``state``,
``response``...): a value copied to another user's item, another conversation or another
attribute fails authentication instead of decrypting there. The master key id is checked
against the keys this container trusts before anything is unwrapped, so an item that names a
key of an attacker's choosing is refused, not used.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from sessions import aws
from sessions.errors import CodecError, SessionError, StoreConfigError

MARKER = b"e"
FORMAT = 1
NONCE = 12
#: The data key's KMS encryption context: a wrapped key is only unwrapped for this purpose.
CONTEXT = {"purpose": "chat-sessions data key"}
RAW, ZLIB = b"j", b"z"  # the codec's markers (sessions.codec)


class DecryptError(CodecError):
    """A sealed value does not open: tampered with, moved from another conversation or
    attribute, or sealed under a master key this container does not trust. Permanent."""


class Keyring(Protocol):
    """A master key that wraps and unwraps data keys."""

    #: The id stored with every value sealed under a data key this keyring made.
    key_id: str

    def generate_data_key(self) -> tuple[bytes, bytes]:
        """A fresh 32-byte data key and the same key wrapped by the master key."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The data key inside ``wrapped``, which names ``key_id`` as its master key.

        Raises:
            DecryptError: ``key_id`` is not trusted, or ``wrapped`` does not open.
            StoreUnavailableError: the key service is unreachable or throttled (retry later).
        """
        ...


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


class LocalKeyring:
    """Master keys from the environment (``SESSIONS_ENCRYPTION_KEY``: 32 bytes, base64), for
    local use and tests. ``old`` keys still unwrap what they wrapped (rotation)."""

    def __init__(self, key: bytes, *, old: Iterable[bytes] = ()) -> None:
        self._keys = {self.id_of(k): k for k in (*old, key)}
        for k in self._keys.values():
            if len(k) != 32:
                raise ValueError("a local master key is 32 bytes")
        self.key_id = self.id_of(key)
        self._current = key

    @staticmethod
    def id_of(key: bytes) -> str:
        return "local:" + hashlib.sha256(b"chat-sessions master key\0" + key).hexdigest()[:16]

    @classmethod
    def from_text(cls, text: str, *, old: str = "") -> LocalKeyring:
        """From base64 text (the environment's form); ``old`` is comma-separated."""
        return cls(_b64key(text), old=[_b64key(t) for t in old.split(",") if t.strip()])

    def generate_data_key(self) -> tuple[bytes, bytes]:
        data_key = os.urandom(32)
        nonce = os.urandom(NONCE)
        wrapped = nonce + _aesgcm(self._current).encrypt(nonce, data_key, self.key_id.encode())
        return data_key, wrapped

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        master = self._keys.get(key_id)
        if master is None:
            raise DecryptError(f"sealed under master key {key_id!r}, which is not configured")
        from cryptography.exceptions import InvalidTag

        try:
            return bytes(_aesgcm(master).decrypt(wrapped[:NONCE], wrapped[NONCE:], key_id.encode()))
        except (InvalidTag, ValueError) as exc:
            raise DecryptError(f"the data key under {key_id!r} does not open") from exc


class KMSKeyring:
    """An AWS KMS key (``SESSIONS_KMS_KEY_ID``, its ARN): ``GenerateDataKey`` once per data
    key, ``Decrypt`` once per foreign data key, both with :data:`CONTEXT`. ``Decrypt`` names
    the expected key, so KMS itself refuses a wrapped key made under another one. KMS's own
    rotation of the key is transparent; ``readable`` lists retired key ARNs still trusted."""

    def __init__(self, key_id: str, *, client: Any = None, readable: Iterable[str] = ()) -> None:
        self.key_id = key_id
        self._trusted = {key_id, *readable}
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.make_client("kms", read_timeout=3)
        return self._client

    def generate_data_key(self) -> tuple[bytes, bytes]:
        out = self._call(
            "generate_data_key", KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=CONTEXT
        )
        return bytes(out["Plaintext"]), bytes(out["CiphertextBlob"])

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        if key_id not in self._trusted:
            raise DecryptError(f"sealed under KMS key {key_id!r}, which is not trusted here")
        out = self._call("decrypt", KeyId=key_id, CiphertextBlob=wrapped, EncryptionContext=CONTEXT)
        return bytes(out["Plaintext"])

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return aws.call(self.client, operation, service="KMS", classify=self._classify, **kwargs)

    def _classify(self, code: str) -> SessionError | None:
        if code in ("InvalidCiphertextException", "IncorrectKeyException"):
            return DecryptError(f"KMS refused the data key: {code}")
        if code in (
            "AccessDeniedException",
            "NotFoundException",
            "DisabledException",
            "KMSInvalidStateException",
            "InvalidKeyUsageException",
        ):
            return StoreConfigError(f"KMS key {self.key_id!r}: {code}")
        return None


class Envelope:
    """Seals and opens values with cached data keys (thread-safe; one per container).

    Args:
        keyring: the master key.
        data_key_ttl: seconds a data key seals new values before a fresh one is made.
        cache_size: unwrapped data keys kept (other containers' keys, older keys).
        clock: injectable for tests.
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        data_key_ttl: float = 3600,
        cache_size: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keyring = keyring
        self.data_key_ttl = data_key_ttl
        self.cache_size = cache_size
        self.clock = clock
        self._lock = threading.Lock()
        self._current: tuple[bytes, bytes, float] | None = None  # key, header, made at
        self._opened: OrderedDict[bytes, Any] = OrderedDict()  # wrapped -> AESGCM
        #: Key-service requests made (GenerateDataKey + Decrypt), for metrics and benchmarks.
        self.key_requests = 0

    def seal(self, blob: bytes, *, aad: bytes) -> bytes:
        """Encrypt a codec blob (compressed first when that makes it smaller)."""
        if blob[:1] == RAW and len(blob) > 64:
            packed = ZLIB + zlib.compress(blob[1:], 6)
            blob = packed if len(packed) < len(blob) else blob
        aead, header = self._sealing_key()
        nonce = os.urandom(NONCE)
        return header + nonce + bytes(aead.encrypt(nonce, blob, aad))

    def open(self, sealed: bytes, *, aad: bytes) -> bytes:
        """The codec blob inside ``sealed``.

        Raises:
            DecryptError: tampered, moved, or under an untrusted master key.
            StoreUnavailableError / StoreConfigError: the key service failed.
        """
        try:
            if sealed[:2] != MARKER + bytes([FORMAT]):
                raise DecryptError(f"not a sealed value of format {FORMAT}")
            at = 2
            id_len = sealed[at]
            key_id = sealed[at + 1 : at + 1 + id_len].decode()
            at += 1 + id_len
            (wrapped_len,) = struct.unpack_from(">H", sealed, at)
            wrapped = bytes(sealed[at + 2 : at + 2 + wrapped_len])
            at += 2 + wrapped_len
            nonce, body = sealed[at : at + NONCE], sealed[at + NONCE :]
            if len(nonce) != NONCE or len(body) < 16:
                raise DecryptError("sealed value is truncated")
        except (IndexError, struct.error, UnicodeDecodeError) as exc:
            raise DecryptError(f"sealed value is malformed: {exc}") from exc
        aead = self._opening_key(key_id, wrapped)
        from cryptography.exceptions import InvalidTag

        try:
            return bytes(aead.decrypt(nonce, body, aad))
        except InvalidTag as exc:
            raise DecryptError(
                "sealed value fails authentication (tampered with, or moved from another "
                "conversation)"
            ) from exc

    def _sealing_key(self) -> tuple[Any, bytes]:
        with self._lock:
            now = self.clock()
            if self._current is None or now - self._current[2] >= self.data_key_ttl:
                data_key, wrapped = self.keyring.generate_data_key()
                self.key_requests += 1
                key_id = self.keyring.key_id.encode()
                header = (
                    MARKER
                    + bytes([FORMAT, len(key_id)])
                    + key_id
                    + struct.pack(">H", len(wrapped))
                    + wrapped
                )
                self._current = (data_key, header, now)
                self._remember(wrapped, _aesgcm(data_key))
            return self._opened[self._wrapped_of(self._current[1])], self._current[1]

    def _opening_key(self, key_id: str, wrapped: bytes) -> Any:
        with self._lock:
            aead = self._opened.get(wrapped)
            if aead is not None:
                self._opened.move_to_end(wrapped)
                return aead
        data_key = self.keyring.unwrap(key_id, wrapped)  # outside the lock: a network call
        with self._lock:
            self.key_requests += 1
            aead = _aesgcm(data_key)
            self._remember(wrapped, aead)
            return aead

    def _remember(self, wrapped: bytes, aead: Any) -> None:
        self._opened[wrapped] = aead
        self._opened.move_to_end(wrapped)
        current = self._wrapped_of(self._current[1]) if self._current else None
        while len(self._opened) > self.cache_size:
            oldest = next(iter(self._opened))
            if oldest == current:
                self._opened.move_to_end(oldest)
                continue
            del self._opened[oldest]

    @staticmethod
    def _wrapped_of(header: bytes) -> bytes:
        id_len = header[2]
        return header[3 + id_len + 2 :]


def sealed(blob: bytes) -> bool:
    return blob[:1] == MARKER


def _b64key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise ValueError("an encryption key is 32 bytes in base64") from exc
    if len(key) != 32:
        raise ValueError(f"an encryption key is 32 bytes in base64 (got {len(key)} bytes)")
    return key


__all__ = ["DecryptError", "Envelope", "KMSKeyring", "Keyring", "LocalKeyring", "sealed"]
