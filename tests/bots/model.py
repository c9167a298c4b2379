"""The bots the whole-product model (``tests/property/test_product_model.py``) talks to: one
of a single scope (``conversation``) and one of several (``channel`` first, so its timers live
in the channel's shared state, then ``conversation`` and ``user``). Both do everything a bot
can: notes in any scope, timers set, replaced and cancelled, effects (fast and slow) with
follow-ups, private replies, buttons and a slash command. Every reply quotes the text it
answers, so a text that must not come back (a deleted user's canary, a private answer) is
seen wherever it goes.

Each user event's text starts with a tag (``e12 note channel <text>``) that the first scope's
``log`` keeps with the user's id: the model counts how often each event was applied. A well
behaved bot forgets a deleted user (``user_deleted``): their log entries, notes and votes go,
and the timers they set are cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bot import Bot, CancelTimer, Effect, EffectCall, Message, Outcome, Reply, Scopes, Timer
from bot import effect as effect_of

VOTE = "model:vote"


def _fresh() -> dict[str, Any]:
    return {"log": [], "notes": [], "owners": {}}


def _forget(state: dict[str, Any], user: str) -> dict[str, Any]:
    return {
        "log": [e for e in state["log"] if e[1] != user],
        "notes": [n for n in state["notes"] if n[0] != user],
        "owners": {k: v for k, v in state["owners"].items() if v[0] != user},
    }


class _Model(Bot[Any]):
    commands: ClassVar[tuple[str, ...]] = ("/model",)
    actions: ClassVar[tuple[str, ...]] = (VOTE,)

    def _scopes(self) -> tuple[str, ...]:
        return self.scope if isinstance(self.scope, tuple) else (self.scope,)

    def initial_state(self) -> Any:
        if isinstance(self.scope, tuple):
            return Scopes(**{s: _fresh() for s in self.scope})
        return _fresh()

    def _split(self, state: Any) -> dict[str, dict[str, Any]]:
        if isinstance(state, Scopes):
            return {s: dict(getattr(state, s) or _fresh()) for s in self._scopes()}
        return {self._scopes()[0]: dict(state or _fresh())}

    def _join(self, states: dict[str, dict[str, Any]]) -> Any:
        if isinstance(self.scope, tuple):
            return Scopes(**states)
        return states[self.scope]

    def turn(self, state: Any, message: Message) -> Outcome[Any]:
        states = self._split(state)
        first = self._scopes()[0]
        user = message.user or ""
        if message.kind == "user_deleted":
            owned = [n for n, (by, _) in states[first]["owners"].items() if by == user]
            states = {s: _forget(v, user) for s, v in states.items()}
            return Outcome(self._join(states), [], [CancelTimer(n) for n in owned])
        if message.kind == "timer":
            args = message.payload if isinstance(message.payload, Mapping) else {}
            owners = dict(states[first]["owners"])
            owners.pop(message.action or "", None)
            states[first] = {**states[first], "owners": owners}
            return Outcome(self._join(states), [Reply(f"Reminder {args.get('text', '')}")])
        if message.kind == "effect":
            result = message.result if isinstance(message.result, Mapping) else {}
            return Outcome(self._join(states), [Reply(f"Echo {result.get('text', '')}")])
        if message.action == VOTE:
            words = (message.value or "").split(" ", 1)
        else:
            words = (message.text or "").split(" ", 1)
        tag = words[0]
        rest = words[1] if len(words) > 1 else ""
        if not tag.startswith("e"):
            return Outcome(self._join(states), [Reply("?")])
        log = [*states[first]["log"], [tag, user]]
        states[first] = {**states[first], "log": log}
        if message.action == VOTE:
            states[first]["notes"] = [*states[first]["notes"], [user, rest]]
            return Outcome(self._join(states), [Reply(f"Voted {rest}")])
        verb, _, args = rest.partition(" ")
        effects: list[Any] = []
        replies: list[Any] = []
        if verb == "note":
            scope, _, text = args.partition(" ")
            scope = scope if scope in states else first
            states[scope] = {**states[scope], "notes": [*states[scope]["notes"], [user, text]]}
            replies.append(Reply(f"Noted {text}"))
        elif verb == "remind":
            name, after, text = [*args.split(" ", 2), "", "", ""][:3]
            owners = {**states[first]["owners"], name: [user, text]}
            states[first] = {**states[first], "owners": owners}
            effects.append(Timer(name, after=float(after), args={"text": text}))
            replies.append(Reply(f"Will remind {text}"))
        elif verb == "cancel":
            owners = dict(states[first]["owners"])
            owners.pop(args, None)
            states[first] = {**states[first], "owners": owners}
            effects.append(CancelTimer(args))
            replies.append(Reply("Cancelled"))
        elif verb in ("fx", "slowfx"):
            effects.append(Effect("echo" if verb == "fx" else "slowecho", {"text": args}))
            replies.append(Reply(f"Asked {args}"))
        elif verb == "secret":
            replies.append(Reply(f"Psst {args}", visibility="ephemeral"))
        else:
            replies.append(Reply(f"Heard {rest}"))
        return Outcome(self._join(states), replies, effects)

    @effect_of("echo")
    def echo(self, args: Mapping[str, Any], call: EffectCall) -> Any:
        return {"text": args.get("text", "")}

    @effect_of("slowecho", slow=True)
    def slow_echo(self, args: Mapping[str, Any], call: EffectCall) -> Any:
        return {"text": args.get("text", "")}


class Conversation(_Model):
    scope: ClassVar[str | tuple[str, ...]] = "conversation"
    namespace: ClassVar[str | None] = "mconv"


class Shared(_Model):
    scope: ClassVar[str | tuple[str, ...]] = ("channel", "conversation", "user")
    namespace: ClassVar[str | None] = "mshared"


conversation = Conversation()
shared = Shared()


class Channel(_Model):
    scope: ClassVar[str | tuple[str, ...]] = "channel"
    namespace: ClassVar[str | None] = "mchannel"


channel = Channel()
