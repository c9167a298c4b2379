"""A poll a whole channel votes in: channel-scope state, buttons, a live tally.

    BOT=examples.poll:bot make run      # then: make chat, type `poll Lunch? pizza, sushi`

Slack: ``/poll Lunch? pizza, sushi`` in a channel (or ``poll Lunch? pizza, sushi`` in a DM)
posts the poll with a button per option. Everyone in the channel votes on the same poll:
``scope = "channel"`` gives every user of the channel one shared state. A vote replaces the
poll message with the new tally (Slack's ``response_url`` with ``replace_original``) and
tells the voter alone (ephemeral) what they voted; voting again changes the vote. The
poll's author closes it. On Messenger (where a "channel" is the page and its user) the same
text works as a poll of one.

Each vote is applied exactly once however many people vote in the same second and however
often Slack redelivers: the session layer commits each event once and re-runs a turn that
lost a race on the shared item (``make bench`` measures 10, 20 and 50 voters at once).

A poll keeps who voted what (so a vote can change): the voters' data, in the channel's
state. When a user is deleted, the bot gets ``Message(kind="user_deleted")`` on every channel
they voted in and drops their votes; the polls they opened stay, without an author.
"""

from __future__ import annotations

from typing import ClassVar, TypedDict

from bot import Bot, Button, Message, Outcome, Reply


class Poll(TypedDict):
    question: str
    options: list[str]
    votes: dict[str, int]  # user id -> option index
    author: str
    closed: bool


class State(TypedDict):
    polls: dict[str, Poll]
    next: int


VOTE = "poll:vote"
CLOSE = "poll:close"
#: Older polls are dropped past this many, so a busy channel's state stays small.
KEEP = 20
USAGE = "Ask a question with options: `poll Lunch? pizza, sushi, salad` (2 to 10 options)."


def parse(text: str) -> tuple[str, list[str]] | None:
    """``"Lunch? pizza, sushi"`` -> ``("Lunch?", ["pizza", "sushi"])``; ``None`` if it is not
    a question with 2-10 options."""
    question, mark, rest = text.partition("?")
    options = [o.strip() for o in rest.split(",") if o.strip()]
    if not mark or not question.strip() or not 2 <= len(options) <= 10:
        return None
    return question.strip() + "?", options[:10]


def tally(poll_id: str, poll: Poll) -> Reply:
    """The poll message: the question, each option with its votes, and the buttons."""
    counts = [0] * len(poll["options"])
    for choice in poll["votes"].values():
        if 0 <= choice < len(counts):
            counts[choice] += 1
    total = sum(counts)
    lines = [f"*{poll['question']}*" + (" (closed)" if poll["closed"] else "")]
    for option, count in zip(poll["options"], counts, strict=True):
        lines.append(f"{option}: {count} {'vote' if count == 1 else 'votes'}")
    lines.append(f"{total} {'vote' if total == 1 else 'votes'} in all")
    buttons: list[Button] = []
    if not poll["closed"]:
        buttons = [
            Button(option, VOTE, f"{poll_id}:{index}")
            for index, option in enumerate(poll["options"])
        ]
        buttons.append(Button("Close", CLOSE, poll_id))
    return Reply("\n".join(lines), buttons, visibility="in_channel")


class PollBot(Bot[State]):
    scope: ClassVar[str | tuple[str, ...]] = "channel"
    namespace: ClassVar[str | None] = "poll"
    commands: ClassVar[tuple[str, ...]] = ("/poll",)
    action_prefix: ClassVar[str | None] = "poll:"

    def initial_state(self) -> State:
        return {"polls": {}, "next": 1}

    def turn(self, state: State, message: Message) -> Outcome[State]:
        if message.kind == "user_deleted":
            return self.forget(state, message.user)
        if message.kind == "action" and message.action == VOTE:
            return self.vote(state, message)
        if message.kind == "action" and message.action == CLOSE:
            return self.close(state, message)
        text = message.text.strip()
        if message.kind == "text":
            if not text.lower().startswith("poll"):
                return Outcome(state, [USAGE])
            text = text[4:].strip()
        parsed = parse(text)
        if parsed is None:
            return Outcome(state, [Reply(USAGE, visibility="ephemeral")])
        question, options = parsed
        poll_id = str(state["next"])
        poll: Poll = {
            "question": question,
            "options": options,
            "votes": {},
            "author": message.user,
            "closed": False,
        }
        polls = dict(state["polls"]) | {poll_id: poll}
        for old in sorted(polls, key=int)[:-KEEP]:
            del polls[old]
        return Outcome({"polls": polls, "next": state["next"] + 1}, [tally(poll_id, poll)])

    def vote(self, state: State, message: Message) -> Outcome[State]:
        poll_id, _, index = (message.value or "").partition(":")
        poll = state["polls"].get(poll_id)
        if poll is None or not index.isdigit() or int(index) >= len(poll["options"]):
            return Outcome(state, [Reply("There is no such poll here.", visibility="ephemeral")])
        if poll["closed"]:
            return Outcome(state, [Reply("That poll is closed.", visibility="ephemeral")])
        choice = int(index)
        voted: Poll = {**poll, "votes": {**poll["votes"], message.user: choice}}
        new = {**state, "polls": {**state["polls"], poll_id: voted}}
        option = poll["options"][choice]
        return Outcome(
            new,  # type: ignore[arg-type]
            [
                _replacing(tally(poll_id, voted)),
                Reply(f"You voted {option}.", visibility="ephemeral"),
            ],
        )

    def close(self, state: State, message: Message) -> Outcome[State]:
        poll_id = message.value or ""
        poll = state["polls"].get(poll_id)
        if poll is None:
            return Outcome(state, [Reply("There is no such poll here.", visibility="ephemeral")])
        if poll["author"] != message.user:
            return Outcome(
                state, [Reply("Only the poll's author can close it.", visibility="ephemeral")]
            )
        closed: Poll = {**poll, "closed": True}
        new = {**state, "polls": {**state["polls"], poll_id: closed}}
        return Outcome(new, [_replacing(tally(poll_id, closed))])  # type: ignore[arg-type]

    def forget(self, state: State, user: str) -> Outcome[State]:
        """A deleted user's votes go; the polls they opened stay, without their author."""
        polls: dict[str, Poll] = {}
        for poll_id, poll in state["polls"].items():
            votes = {u: c for u, c in poll["votes"].items() if u != user}
            author = "" if poll["author"] == user else poll["author"]
            polls[poll_id] = {**poll, "votes": votes, "author": author}
        return Outcome({**state, "polls": polls})


def _replacing(reply: Reply) -> Reply:
    return Reply(reply.text, reply.buttons, visibility=reply.visibility, replace=True)


bot = PollBot()
