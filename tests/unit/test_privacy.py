"""Our log lines carry no exception message, no user id: the filter every logger of ours has."""

from __future__ import annotations

import io
import logging

from sessions.privacy import Scrub, conversation_hash, private, withheld

CANARY = "canary-7f3a user text"


def _raise() -> None:
    try:
        {}["x"]
    except KeyError as exc:
        raise ValueError(f"bot failed on {CANARY!r}") from exc


def test_a_traceback_keeps_its_frames_and_classes_not_its_messages() -> None:
    try:
        _raise()
    except ValueError as exc:
        text = withheld(exc)
    assert CANARY not in text and "'x'" not in text
    assert "builtins.KeyError (message withheld)" in text
    assert "builtins.ValueError (message withheld)" in text
    assert "in _raise" in text  # the frames stay: the bug can be found


def test_every_record_of_ours_is_scrubbed_before_any_handler() -> None:
    logger = private(logging.getLogger("tests.privacy"))
    private(logger)  # once only
    assert sum(isinstance(f, Scrub) for f in logger.filters) == 1
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s %(user)s"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            _raise()
        except ValueError as exc:
            logger.error("turn failed: %s", exc, exc_info=True, extra={"pk": "slack#T1#U" + CANARY})
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert CANARY not in text
    assert "turn failed: ValueError" in text and "(message withheld)" in text
    assert len(conversation_hash("a", "b")) == 16
