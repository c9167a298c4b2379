"""What our log lines may carry: hashes, counts and error classes, never a user id, a message's
text or an exception's message (a bot's exception often quotes the user: ``KeyError('milk')``).

:func:`private` puts a filter on one of our loggers that rewrites each record before any handler
sees it: an exception becomes its traceback with every message withheld (frames and classes
stay, to find the bug; the message is kept only in the sealed dead letter), an exception passed
as an argument becomes its class name, and a ``pk`` field becomes a hash.
"""

from __future__ import annotations

import hashlib
import logging
import traceback


def fingerprint(text: str) -> str:
    """A short hash to correlate log lines without carrying the value (16 hex)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def conversation_hash(pk: str, sk: str) -> str:
    """The conversation's hash in turn lines and error lines alike."""
    return fingerprint(f"{pk}/{sk}")


def withheld(exc: BaseException) -> str:
    """``exc``'s traceback, its causes' included, with each exception's message left out."""
    lines: list[str] = []
    seen: set[int] = set()

    def walk(error: BaseException) -> None:
        seen.add(id(error))
        cause = error.__cause__
        if cause is None and not error.__suppress_context__:
            cause = error.__context__
        if cause is not None and id(cause) not in seen:
            walk(cause)
            lines.append("\nThe above led to:\n\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_list(traceback.extract_tb(error.__traceback__)))
        kind = type(error)
        lines.append(f"{kind.__module__}.{kind.__qualname__} (message withheld)\n")

    walk(exc)
    return "".join(lines).rstrip("\n")


class Scrub(logging.Filter):
    """Rewrites a record of ours so that it carries no personal data (see the module)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.exc_text = withheld(error)
            record.error_class = type(error).__name__
            record.traceback = record.exc_text  # JSON formatters read fields, not exc_text
            record.exc_info = None
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                type(a).__name__ if isinstance(a, BaseException) else a for a in record.args
            )
        pk = record.__dict__.pop("pk", None)
        if isinstance(pk, str):
            record.user = fingerprint(pk)
        return True


_SCRUB = Scrub()


def private(logger: logging.Logger) -> logging.Logger:
    """``logger`` with the :class:`Scrub` filter (once)."""
    if _SCRUB not in logger.filters:
        logger.addFilter(_SCRUB)
    return logger


__all__ = ["Scrub", "conversation_hash", "fingerprint", "private", "withheld"]
