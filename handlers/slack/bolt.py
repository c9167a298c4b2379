"""Bolt-native sessions: a listener declares a ``session`` argument and gets the
conversation's state, committed when it returns, with ``say``/``respond`` held until then.

    from handlers.slack.bolt import with_session

    @app.command("/count")
    @with_session(sessions)
    def count(ack, session, say):
        \"\"\"May run more than once per event: pure apart from ack/say/respond.\"\"\"
        session["n"] = session.get("n", 0) + 1
        say(f"count is {session['n']}")
        ack()

The listener runs as the pure turn of :meth:`sessions.Sessions.run`: when two events for one
conversation race, the loser re-reads the state and **runs the listener again**, so it must not
have other side effects (no API calls, no writes elsewhere); ``say`` and ``respond`` calls are
recorded and replayed once, after the commit, and a redelivered event replays nothing.
Build the app with ``process_before_response=True`` on Lambda.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from slack_bolt.kwargs_injection.args import Args

from handlers.slack import parse as payloads
from sessions import ConversationKey, PermanentError, Sessions

Listener = Callable[..., Any]


def conversation_key(body: Mapping[str, Any]) -> ConversationKey:
    """The conversation of a slash command, an Events API event or an interactivity payload.

    Raises:
        InvalidKeyError: the payload carries no valid team, channel or user id.
    """
    if "command" in body:
        return payloads.command_key(body)
    if body.get("type") == "event_callback":
        return payloads.event_key(body)
    return payloads.action_key(body)


def idempotency_key(body: Mapping[str, Any]) -> str:
    """``event_id`` for events, ``trigger_id`` for commands, the action's ids otherwise."""
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    if "command" in body and body.get("trigger_id"):
        return f"trigger:{body['trigger_id']}"
    actions = body.get("actions") or [{}]
    return payloads.action_idempotency_key(body, actions[0])


class _Held:
    """Stands in for ``say``/``respond`` during the turn: records calls, sends nothing."""

    def __init__(self, name: str, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]):
        self.name = name
        self.calls = calls

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((self.name, args, kwargs))


def with_session(
    sessions: Sessions,
    *,
    key: Callable[[Mapping[str, Any]], ConversationKey] = conversation_key,
    idempotency: Callable[[Mapping[str, Any]], str] = idempotency_key,
) -> Callable[[Listener], Listener]:
    """Decorate a Bolt listener so it may declare ``session`` (a dict it may change).

    Raises (from the decorated listener, so Bolt answers 5xx and Slack redelivers events):
        BusyError, StoreError: nothing was committed and nothing was said.

    A listener that raises (or a state that no longer decodes, or is too large) would fail
    the same way on every redelivery: the event is recorded as a dead letter, nothing is
    said, and the listener returns normally so Slack gets its 200 (acked here if the
    listener had not acked).
    """

    def decorate(fn: Listener) -> Listener:
        wanted = list(inspect.signature(fn).parameters)

        def listener(args: Args) -> Any:
            body = args.body
            outcome: dict[str, Any] = {}

            def turn(state: dict[str, Any], _: Any) -> tuple[Any, list[Any], None]:
                calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
                session = dict(state)  # a fresh copy each run: a re-run starts clean
                kwargs: dict[str, Any] = {}
                for name in wanted:
                    if name == "session":
                        kwargs[name] = session
                    elif name in {"say", "respond"}:
                        kwargs[name] = _Held(name, calls)
                    else:
                        kwargs[name] = getattr(args, name, None)
                outcome["returned"] = fn(**kwargs)
                return session, calls, None

            def replay(_: ConversationKey, calls: Any) -> None:
                for name, call_args, call_kwargs in calls:
                    getattr(args, name)(*call_args, **call_kwargs)

            try:
                sessions.run(
                    key(body),
                    idempotency(body),
                    turn,
                    None,
                    event_time=payloads.event_time(body, args.request.headers),
                    sender=replay,
                )
            except PermanentError:
                if args.ack is not None and getattr(args.ack, "response", None) is None:
                    args.ack()
                return None
            return outcome.get("returned")

        listener.__name__ = getattr(fn, "__name__", "listener")
        listener.__doc__ = fn.__doc__
        return listener

    return decorate
