from __future__ import annotations

import json
import os
import zlib

import pytest

from sessions import CodecError, StateTooLargeError, codec


def test_small_state_is_plain_json() -> None:
    blob = codec.encode({"todo": ["milk"]})
    assert blob.startswith(b"j")
    assert json.loads(blob[1:]) == {"v": codec.SCHEMA_VERSION, "s": {"todo": ["milk"]}}
    assert codec.decode(blob) == {"todo": ["milk"]}


def test_large_state_is_compressed() -> None:
    state = {"items": ["buy oat milk and bread"] * 1000}
    blob = codec.encode(state)
    assert blob.startswith(b"z")
    assert len(blob) < len(json.dumps(state)) / 10
    assert codec.decode(blob) == state


def test_unicode_survives() -> None:
    state = {"text": "café ☕ 日本語 \U0001f600"}
    assert codec.decode(codec.encode(state)) == state


def test_too_large_raises_with_sizes() -> None:
    with pytest.raises(StateTooLargeError) as caught:
        codec.encode({"noise": os.urandom(500_000).hex()})
    assert caught.value.size > caught.value.limit == codec.MAX_STATE_BYTES


def test_not_json_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        codec.encode({"when": object()})
    with pytest.raises(CodecError):
        codec.encode({"nan": float("nan")})


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"x{}",
        b"j{not json",
        b"z" + b"not zlib",
        b'j{"v":99,"s":{}}',
        b'j{"s":{}}',
        b"j[1,2]",
        b"z" + zlib.compress(b'{"v":2,"s":1}'),
    ],
)
def test_bad_blobs_raise_codec_error(blob: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode(blob)
