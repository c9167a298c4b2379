"""Where states too large for their item go: S3 in the deploy, a directory locally.

A large state is written *before* the commit, under a content-addressed name (the SHA-256 of
the bytes, under a prefix per user), and the item keeps only a pointer to it. So the commit
stays the one conditional write that decides the turn: a crash between the object's write and
the commit leaves an object nothing points at (invisible, removed by the bucket's lifecycle
rule), and a lost race leaves one too; the guarantees (exactly once, no lost update) are the
item's, unchanged. Objects are never overwritten with other content: a name is its content.

Layout of a pointer (what the item's state holds)::

    b"s" + name        name = "<32 hex of sha256(user's pk)>/<64 hex of sha256(bytes)>"
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

from sessions import aws
from sessions.errors import (
    CodecError,
    SessionError,
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
)

POINTER = b"s"


class BlobStore(Protocol):
    """Named, immutable byte strings."""

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` (idempotent: a name is its content).

        Raises:
            StoreError: it was not stored (``StoreUnavailableError``: may heal).
        """
        ...

    def get(self, name: str) -> bytes:
        """The bytes stored under ``name``.

        Raises:
            CodecError: there is no such object (permanent).
            StoreError: the store failed (``StoreUnavailableError``: may heal).
        """
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose name starts with ``prefix``; return how many."""
        ...


def user_prefix(pk: str) -> str:
    """The folder of a user's objects: a hash, so no user id appears in object names."""
    return hashlib.sha256(pk.encode()).hexdigest()[:32]


def name_for(pk: str, data: bytes) -> str:
    return f"{user_prefix(pk)}/{hashlib.sha256(data).hexdigest()}"


def is_pointer(blob: bytes) -> bool:
    return blob[:1] == POINTER


_NAME = re.compile(r"[0-9a-f]{32}/[0-9a-f]{64}", flags=re.ASCII)


def pointed(blob: bytes, pk: str) -> str:
    """The object name a pointer holds, if it is one of the names :func:`name_for` gives
    this user; else ``CodecError`` (permanent: whoever wrote the item wrote a bad pointer),
    before anything is read from the large-state store (a path outside it, a directory, an
    over-long name, a NUL byte, another user's folder)."""
    try:
        name = blob[1:].decode("ascii")
    except UnicodeDecodeError:
        name = ""
    if not _NAME.fullmatch(name) or not name.startswith(user_prefix(pk) + "/"):
        raise CodecError("large state pointer is not this user's, or not a name of ours")
    return name


def check(name: str, pk: str, data: bytes) -> bytes:
    """``data`` if it is what ``name`` names for this user, else ``CodecError``: a pointer
    copied from another user's item, or an object changed behind our back."""
    if name != name_for(pk, data):
        raise CodecError(f"large state {name!r} is not this user's, or was changed")
    return data


class DirectoryBlobs:
    """Objects as files under a directory (the local counterpart of S3)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        if ".." in name or name.startswith("/"):
            raise StoreError(f"bad object name {name!r}")
        return self.root / name

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half an object.
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        except OSError as exc:
            raise StoreUnavailableError(f"large state not written: {exc}") from exc

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError as exc:
            raise CodecError(f"large state {name!r} is missing") from exc
        except OSError as exc:
            raise StoreUnavailableError(f"large state not read: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix)
        count = 0
        for path in folder.glob("*") if folder.is_dir() else ():
            path.unlink(missing_ok=True)
            count += 1
        return count


class S3Blobs:
    """Objects in an S3 bucket (``SESSIONS_LARGE_STATE_BUCKET``). The bucket's default
    encryption (KMS in the deploy) applies; its lifecycle rule expires objects after the
    session's idle TTL, which removes what no item points at any more."""

    def __init__(self, bucket: str, *, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.make_client("s3", read_timeout=5)
        return self._client

    def put(self, name: str, data: bytes) -> None:
        self._call("put_object", Bucket=self.bucket, Key=name, Body=data)

    def get(self, name: str) -> bytes:
        out = self._call("get_object", Bucket=self.bucket, Key=name)
        return bytes(out["Body"].read())

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        token: dict[str, Any] = {}
        while True:
            page = self._call("list_objects_v2", Bucket=self.bucket, Prefix=prefix + "/", **token)
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self._call("delete_objects", Bucket=self.bucket, Delete={"Objects": keys})
                count += len(keys)
            if not page.get("IsTruncated"):
                return count
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def _call(self, operation: str, **kwargs: Any) -> Any:
        def classify(code: str) -> SessionError | None:
            if code in ("NoSuchKey", "404"):
                return CodecError(f"large state {kwargs.get('Key')!r} is missing")
            if code in ("NoSuchBucket", "AccessDenied", "403"):
                return StoreConfigError(f"S3 bucket {self.bucket!r}: {code}")
            return None

        return aws.call(self.client, operation, service="S3", classify=classify, **kwargs)


__all__ = ["BlobStore", "DirectoryBlobs", "S3Blobs", "check", "is_pointer", "name_for", "pointed"]
