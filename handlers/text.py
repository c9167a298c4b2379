"""Long text in pieces a platform takes: split at line breaks, a longer line hard."""

from __future__ import annotations


def pieces(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, split at line breaks (a line longer
    than ``limit``, hard), in order and nothing dropped but blank lines at a piece's start;
    at least one piece (``" "`` for no text: platforms refuse an empty message)."""
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                out.append(current)
                current = ""
            out.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            out.append(current)
            current = line
        else:
            current = candidate
    if current or not out:
        out.append(current or " ")
    return out
