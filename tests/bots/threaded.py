"""A thread-scope bot for the tests of threads and assistant threads: it keeps a thread's notes
(each with its author), answers in the thread, sets a timer that fires into the thread, and
answers an assistant thread's start with a status, prompts and a title."""

from __future__ import annotations

from typing import Any, ClassVar

from bot import Bot, Message, Outcome, Prompts, Reply, Status, Timer, Title

PROMPTS = (("Summarise", "summarise this thread"), ("Ideas", "list three options"))


class Threaded(Bot[dict[str, Any]]):
    scope: ClassVar[str | tuple[str, ...]] = "thread"
    namespace = "threaded"

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        notes = list(state.get("notes", []))
        if message.kind == "user_deleted":
            kept = [n for n in notes if n["user"] != message.user]
            return Outcome({**state, "notes": kept})
        if message.kind == "thread_started":
            viewing = (message.payload or {}).get("channel")
            return Outcome(
                {**state, "viewing": viewing},
                [Status("is getting ready", ("Warming up",)), Title("New chat"),
                 Prompts(PROMPTS, title="Try one")],
            )  # fmt: skip
        if message.kind == "thread_context":
            return Outcome({**state, "viewing": (message.payload or {}).get("channel")})
        if message.kind == "timer":
            return Outcome(state, [Reply(f"Nudge: {len(notes)} notes")])
        words = message.text.split()
        if "ideas" in words:
            return Outcome(state, [Reply("Pick one"), Prompts(PROMPTS)])
        if "remind" in words:
            return Outcome(state, [Reply("I will nudge you", in_thread=True)],
                           [Timer("nudge", after=60)])  # fmt: skip
        notes.append({"user": message.user, "text": message.text})
        return Outcome(
            {**state, "notes": notes},
            [Status("is writing"), Reply(f"{len(notes)} notes in this thread", in_thread=True)],
        )


bot = Threaded()
