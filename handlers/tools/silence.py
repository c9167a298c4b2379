"""Why ``make chat`` saw no reply, in one line: a connection refused or reset, or what the
server's delivery journal says of the request (dropped or refused before any turn, with the
reason; a dead letter; a duplicate; a turn that answered nothing). Pure functions of what the
server answered, for the chat line.
"""

from __future__ import annotations

from http.client import RemoteDisconnected
from typing import Any


class ChatError(RuntimeError):
    """Something the user can fix (no server, no secrets); one line says what."""


def unreachable(url: str, exc: BaseException) -> ChatError:
    """What a failed connection to ``url`` means, in one line: nothing listens there (refused),
    or the server took the connection and dropped it (reset: a busy server's full backlog),
    which says nothing about whether it is running."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if isinstance(item, BaseException) and item not in seen:
            seen.append(item)
            todo += [item.__cause__, item.__context__, *item.args]
    if any(isinstance(e, ConnectionRefusedError) for e in seen):
        return ChatError(f"no server at {url}: start it with `make run`")
    reset = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, RemoteDisconnected)
    if any(isinstance(e, reset) for e in seen) or "aborted" in str(exc).lower():
        return ChatError(
            f"the server at {url} reset the connection (busy?): the request may or may not "
            "have run; try again"
        )
    return ChatError(f"cannot reach the server at {url}: {type(exc).__name__}")


def entry_of(found: Any, *, user: str, since: float) -> dict[str, Any] | bool | None:
    """The journal's entry for a request of ``user`` sent at ``since`` or later, in what the
    server answered (``{"deliveries": [...]}`` or the inspector's view, ``{"journal": [...],
    "dead_letters": [...]}``): the first that is not a follow-up, a replay or a timer's fire
    (a dead letter's reason filled in from the view's dead letters); ``None`` when the server
    says nothing of it (it ran no turn); ``False`` when the answer is no journal at all."""
    if not isinstance(found, dict):
        return False
    entries = found.get("deliveries", found.get("journal")) or []
    for entry in entries:
        message = entry.get("message") or {}
        if (
            entry.get("user") in (None, user)
            and not entry.get("depth")
            and not entry.get("replay")
            and message.get("kind") != "timer"
            and float(entry.get("at") or 0) >= since
        ):
            if entry.get("outcome") == "dead letter" and not entry.get("reason"):
                letters = found.get("dead_letters") or []
                last = max(letters, key=lambda d: d.get("at") or 0) if letters else {}
                entry = {**entry, "reason": last.get("error")}
            return dict(entry)
    return None


def why_silent(entry: dict[str, Any] | bool | None, *, partition: str) -> str:
    """The chat line for a request no reply came to, from :func:`entry_of`'s answer
    (``partition``: the user's, for the dead letters' admin command)."""
    if entry is None:
        return (
            "(no reply: the server ran no turn for it, it dropped the event before the "
            "bot, e.g. from a workspace with no installation; make run's output says why)"
        )
    if not isinstance(entry, dict):
        return "(no reply seen: if SLACK_API_URL/MESSENGER_API_URL point elsewhere, look there)"
    outcome, reason = entry.get("outcome"), entry.get("reason")
    if outcome in ("dropped", "refused"):
        why = reason or "see make run's output"
        return f"(no reply: the server {outcome} it before any turn: {why})"
    if outcome == "dead letter":
        return (
            f"(no reply: the turn failed and was recorded as a dead letter: "
            f'{reason or "see make run"}; make admin ARGS="dead-letters {partition}")'
        )
    if outcome == "duplicate":
        return "(no reply: the server took it for a duplicate of an event it ran already)"
    if outcome == "ignored":
        return "(no reply: the event was ignored (older than this user's last delete))"
    if outcome == "serialised":
        return "(no reply yet: the conversation was busy; the turn was queued: /wait)"
    if not (entry.get("replies") or entry.get("effects")):
        return f"(the bot answered nothing: the turn ran, version {entry.get('version')})"
    return "(no reply seen: if SLACK_API_URL/MESSENGER_API_URL point elsewhere, look there)"


__all__ = ["ChatError", "entry_of", "unreachable", "why_silent"]
