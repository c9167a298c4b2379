"""A bot that streams a canned answer (a deterministic model), for the streaming tests; run as
``python -m tests.bots.streamer JOB_FILE CRASH_AFTER`` it runs one deferred job of the Slack
edge configured by the environment and dies (``os._exit``) when the model is asked for chunk
``CRASH_AFTER``: a Lambda killed mid-answer, after that many appends (a buffer of 1)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from bot import Bot, Effect, EffectCall, Message, Outcome, effect

CHUNKS = ("Once ", "upon ", "a time, ", "a bot ", "answered ", "exactly once.")
ANSWER = "".join(CHUNKS)
#: The process's exit status when the model kills it.
CRASHED = 17


class ModelDown(RuntimeError):
    pass


class Streamer(Bot[dict[str, Any]]):
    """Each text message: a streamed answer; the follow-up keeps what it got."""

    def __init__(
        self,
        *,
        crash_after: int | None = None,
        fail_after: int | None = None,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        self.crash_after = crash_after
        self.fail_after = fail_after
        self.on_chunk = on_chunk

    def initial_state(self) -> dict[str, Any]:
        return {"answers": [], "errors": []}

    def turn(self, state: dict[str, Any], message: Message) -> Outcome[dict[str, Any]]:
        if message.kind == "effect":
            if message.error is not None:
                errors = [*state["errors"], message.error.split(":")[0]]
                return Outcome({**state, "errors": errors})
            return Outcome({**state, "answers": [*state["answers"], message.result]})
        return Outcome(state, [], [Effect("answer", {"question": message.text})])

    @effect("answer", slow=True, stream=True, cancel_on_message=True)
    def answer(self, args: Any, call: EffectCall) -> Iterator[str]:
        for index, chunk in enumerate(CHUNKS):
            if index == self.crash_after:
                sys.stdout.flush()
                os._exit(CRASHED)
            if index == self.fail_after:
                raise ModelDown("the model is down")
            if self.on_chunk is not None:
                self.on_chunk(index)
            yield chunk


def main(job_file: str, crash_after: int) -> None:
    import handlers.slack
    from handlers.pipeline.streams import StreamSettings
    from handlers.settings import from_env

    edge = handlers.slack.build(from_env(), bot=Streamer(crash_after=crash_after))
    edge.pipeline.streaming = StreamSettings(buffer_chars=1)
    with open(job_file) as f:
        edge.run_deferred(json.load(f))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
