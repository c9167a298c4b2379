"""A team standup: the channel's round, each user's own draft, and a summary posted by a slow
effect. It reads and writes two scopes in one turn.

    BOT=examples.standup:bot make run   # then: make chat, type `standup`

``scope = ("channel", "conversation")``: the turn gets a :class:`~bot.Scopes` with the
channel's state (the round everyone answers in) and the user's own state in that channel
(their draft and last answers), and returns both; they are committed together, once.

Slack: ``/standup`` in a channel opens a round (a message with *Answer* and *Close*
buttons). *Answer* opens a modal (yesterday, today, blockers), prefilled from your last
answers; submitting it adds your answer to the round. *Close* ends the round and hands the
summary to a slow effect, whose follow-up turn posts it in the channel. Messenger has no
forms, so the same bot asks step by step (the draft keeps where you are): ``standup``, then
one answer per message; on Messenger a "channel" is the page and its user, so it is a standup
of one, closed as soon as you answered.

On a schedule: ``standup daily 09:30 Europe/Berlin`` (``/standup daily ...`` on Slack) sets
a recurring :class:`~bot.Timer` (weekdays, in that time zone) kept with the channel's
state; at each time the bot opens a round by itself, and a one-time timer closes it two hours
later (the summary as above). ``standup stop`` cancels the schedule.

When a user is deleted, their answers leave every round (the ``user_deleted`` turn).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from bot import (
    Bot,
    Button,
    CancelTimer,
    CronError,
    Effect,
    EffectCall,
    Field,
    Message,
    Modal,
    Outcome,
    Reply,
    Scopes,
    Timer,
    effect,
    zone,
)

ANSWER = "standup:answer"
CLOSE = "standup:close"
SUBMIT = "standup:submit"
#: The timers: the weekday schedule, and the close of a round it opened.
DAILY = "standup:daily"
AUTO_CLOSE = "standup:close"
CLOSE_AFTER = 2 * 3600
_DAILY = re.compile(r"daily ([01]?\d|2[0-3]):([0-5]\d)(?: (\S+))?", re.IGNORECASE)
QUESTIONS = (
    ("yesterday", "What did you do yesterday?"),
    ("today", "What will you do today?"),
    ("blockers", "Anything blocking you?"),
)


def channel_state() -> dict[str, Any]:
    return {"round": None, "rounds": 0}


def user_state() -> dict[str, Any]:
    return {"step": None, "draft": {}, "last": {}}


class Standup(Bot[Scopes]):
    scope: ClassVar[str | tuple[str, ...]] = ("channel", "conversation")
    namespace: ClassVar[str | None] = "standup"
    commands: ClassVar[tuple[str, ...]] = ("/standup",)
    action_prefix: ClassVar[str | None] = "standup:"

    def initial_state(self) -> Scopes:
        return Scopes(channel=channel_state(), conversation=user_state())

    def turn(self, state: Scopes, message: Message) -> Outcome[Scopes]:
        channel, mine = state.channel, state.conversation
        if message.kind == "user_deleted":
            return Outcome(state.replace(channel=_without(channel, message.user)))
        if message.kind == "timer" and message.action == DAILY:
            return self.scheduled(state, message)
        if message.kind == "timer" and message.action == AUTO_CLOSE:
            return self.close(state) if state.channel["round"] is not None else Outcome(state)
        words = " ".join(message.text.split()).lower().removeprefix("standup ").strip()
        if message.kind in ("command", "text") and (_DAILY.fullmatch(words) or words == "stop"):
            return self.schedule(state, words, message)
        if message.kind == "effect" and message.action == "summary":
            text = message.result if message.error is None else "The summary failed."
            return Outcome(state, [Reply(str(text), visibility="in_channel")])
        if message.kind == "action" and message.action == ANSWER:
            if channel["round"] is None:
                return Outcome(state, [Reply("No standup is open here.", visibility="ephemeral")])
            return Outcome(state, [self.form(mine)])
        if message.kind == "submission" and message.action == SUBMIT:
            return self.answered(state, message, dict(message.form))
        if message.kind == "action" and message.action == CLOSE:
            return self.close(state)
        if message.kind == "text" and mine["step"] is not None:
            return self.step(state, message)
        if message.kind == "command" or message.text.strip().lower() == "standup":
            return self.open(state, message)
        return Outcome(state, ["Type `standup` (or `/standup` in a Slack channel) to start one."])

    def schedule(self, state: Scopes, words: str, message: Message) -> Outcome[Scopes]:
        """``daily HH:MM [Zone]``: a round every weekday at that time; ``stop``: no more."""
        if words == "stop":
            return Outcome(state, ["No more scheduled standups here."], [CancelTimer(DAILY)])
        asked = _DAILY.fullmatch(" ".join(message.text.split()).removeprefix("standup ").strip())
        assert asked is not None
        hour, minute, tz = int(asked[1]), int(asked[2]), asked[3] or "UTC"
        try:
            zone(tz)
        except CronError:
            return Outcome(state, [f"I don't know the time zone {tz!r} (try Europe/Berlin)."])
        timer = Timer(DAILY, cron=f"{minute} {hour} * * MON-FRI", tz=tz)
        when = f"{hour:02d}:{minute:02d} ({tz})"
        return Outcome(state, [Reply(f"A standup every weekday at {when}.")], [timer])

    def scheduled(self, state: Scopes, message: Message) -> Outcome[Scopes]:
        """The schedule's time: open a round (unless one is open) that closes itself."""
        if state.channel["round"] is not None:
            return Outcome(state)
        opened = self.open(state, dataclasses.replace(message, kind="command"))
        close = Timer(AUTO_CLOSE, after=CLOSE_AFTER)
        return Outcome(opened.state, opened.replies, [*opened.effects, close])

    def form(self, mine: dict[str, Any]) -> Modal:
        last = mine["last"]
        return Modal(
            SUBMIT,
            "Standup",
            [
                Field("yesterday", "Yesterday", multiline=True, initial=last.get("today", "")),
                Field("today", "Today", multiline=True),
                Field("blockers", "Blockers", optional=True),
            ],
            fallback="Answer step by step: type `standup`.",
        )

    def open(self, state: Scopes, message: Message) -> Outcome[Scopes]:
        channel, mine = state.channel, state.conversation
        if message.platform == "messenger" or message.kind == "text":
            # No forms here: step by step, the draft keeps where the user is.
            if channel["round"] is None:
                channel = {**channel, "round": {"answers": {}}, "rounds": channel["rounds"] + 1}
            mine = {**mine, "step": 0, "draft": {}}
            return Outcome(Scopes(channel=channel, conversation=mine), [QUESTIONS[0][1]])
        if channel["round"] is not None:
            return Outcome(
                state, [Reply("A standup is already open here.", visibility="ephemeral")]
            )
        number = channel["rounds"] + 1
        channel = {**channel, "round": {"answers": {}}, "rounds": number}
        return Outcome(
            state.replace(channel=channel),
            [
                Reply(
                    f"Standup #{number}: press Answer to give yours.",
                    [Button("Answer", ANSWER), Button("Close", CLOSE)],
                    visibility="in_channel",
                )
            ],
        )

    def step(self, state: Scopes, message: Message) -> Outcome[Scopes]:
        mine = state.conversation
        name = QUESTIONS[mine["step"]][0]
        draft = {**mine["draft"], name: message.text.strip()}
        following = mine["step"] + 1
        if following < len(QUESTIONS):
            mine = {**mine, "step": following, "draft": draft}
            return Outcome(state.replace(conversation=mine), [QUESTIONS[following][1]])
        return self.answered(state.replace(conversation={**mine, "draft": {}}), message, draft)

    def answered(self, state: Scopes, message: Message, answers: dict[str, str]) -> Outcome[Scopes]:
        channel, mine = state.channel, state.conversation
        if channel["round"] is None:
            return Outcome(state, [Reply("That standup is closed.", visibility="ephemeral")])
        round_ = {"answers": {**channel["round"]["answers"], message.user: answers}}
        channel = {**channel, "round": round_}
        mine = {**mine, "step": None, "draft": {}, "last": answers}
        new = Scopes(channel=channel, conversation=mine)
        thanks = Reply("Thanks, your answer is in.", visibility="ephemeral")
        if message.platform == "messenger":  # the page and one user: their answer closes it
            return self.close(new, thanks)
        return Outcome(new, [thanks])

    def close(self, state: Scopes, *before: Reply) -> Outcome[Scopes]:
        channel = state.channel
        if channel["round"] is None:
            return Outcome(state, [Reply("No standup is open here.", visibility="ephemeral")])
        answers = channel["round"]["answers"]
        closed = {**channel, "round": None}
        return Outcome(
            state.replace(channel=closed),
            [*before, Reply(f"Standup closed: {len(answers)} answered. Summary coming.")],
            [Effect("summary", {"number": channel["rounds"], "answers": answers})],
        )

    @effect("summary", slow=True)
    def summary(self, args: Mapping[str, Any], call: EffectCall) -> str:
        """Slow work after the commit (here: formatting; in a real bot an LLM or a wiki
        page); its result comes back as a turn that posts it."""
        lines = [f"*Standup #{args['number']}*"]
        for user, answer in sorted(args["answers"].items()):
            lines.append(
                f"{user}: yesterday {answer.get('yesterday') or '-'}; "
                f"today {answer.get('today') or '-'}; blockers {answer.get('blockers') or 'none'}"
            )
        if not args["answers"]:
            lines.append("Nobody answered.")
        return "\n".join(lines)


def _without(channel: dict[str, Any], user: str) -> dict[str, Any]:
    if channel["round"] is None:
        return channel
    answers = {u: a for u, a in channel["round"]["answers"].items() if u != user}
    return {**channel, "round": {"answers": answers}}


bot = Standup()
