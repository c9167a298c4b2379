"""State encoding: versioned JSON, compressed when large, bounded by DynamoDB's item size.

Layout of an encoded value: one marker byte, then the payload::

    b"j" + JSON                   small values, readable in a table browser
    b"z" + zlib(JSON)             values whose JSON passes COMPRESS_ABOVE bytes

The JSON is an envelope ``{"v": SCHEMA_VERSION, "s": <state>}``; a reader that meets another
schema version refuses it (CodecError) instead of guessing.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from sessions.errors import CodecError, StateTooLargeError

SCHEMA_VERSION = 1
COMPRESS_ABOVE = 2048
#: DynamoDB's item limit is 400 KB, counting attribute names and values. The state shares its
#: item with the keys, version and expiry (well under 2 KB), hence the margin.
ITEM_LIMIT = 400 * 1024
MAX_STATE_BYTES = ITEM_LIMIT - 2048

RAW = b"j"
ZLIB = b"z"


def encode(value: Any, *, limit: int = MAX_STATE_BYTES) -> bytes:
    """Encode a JSON-compatible value.

    Raises:
        CodecError: the value is not JSON-serialisable.
        StateTooLargeError: even compressed, it would not fit in one item.
    """
    try:
        text = json.dumps(
            {"v": SCHEMA_VERSION, "s": value},
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise CodecError(f"state is not JSON-serialisable: {exc}") from exc
    # A lone surrogate ("\ud800") is valid JSON and a valid Python string, not valid UTF-8:
    # kept as it came (``json.loads`` reads it back), instead of failing on every delivery.
    raw = text.encode("utf-8", "surrogatepass")
    blob = RAW + raw if len(raw) <= COMPRESS_ABOVE else ZLIB + zlib.compress(raw, 6)
    if len(blob) > limit:
        raise StateTooLargeError(
            f"encoded state is {len(blob)} bytes ({len(raw)} before compression); "
            f"one item holds at most {limit}",
            size=len(blob),
            limit=limit,
        )
    return blob


def decode(blob: bytes) -> Any:
    """Decode what :func:`encode` produced.

    Raises:
        CodecError: unknown marker or schema version, or corrupt bytes.
    """
    if not blob:
        raise CodecError("empty state blob")
    marker, body = blob[:1], blob[1:]
    try:
        if marker == ZLIB:
            body = zlib.decompress(body)
        elif marker != RAW:
            raise CodecError(f"unknown state encoding marker {marker!r}")
        envelope = json.loads(body)
    except (zlib.error, ValueError) as exc:
        raise CodecError(f"corrupt state blob: {exc}") from exc
    if not isinstance(envelope, dict) or envelope.get("v") != SCHEMA_VERSION or "s" not in envelope:
        version = envelope.get("v") if isinstance(envelope, dict) else None
        raise CodecError(
            f"unsupported state schema version {version!r} (expected {SCHEMA_VERSION})"
        )
    return envelope["s"]
