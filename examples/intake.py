"""A support intake: a multi-step form that files a ticket through an effect.

    BOT=examples.intake:bot make run    # then: make chat, type `ticket`

On Slack, ``/ticket`` (or the "Open the form" button a DM gets) opens a modal; on Messenger
the bot asks field by field, urgency as quick replies. Either way the turn that completes the
form does not call the ticketing system itself (a turn may run twice): it returns an
``Effect("file_ticket", ...)``. That runs once, after the commit, in a separate invocation
(``slow=True``: the platform's ack does not wait for it), with an idempotency key of its own
that it passes on; its result comes back as a follow-up turn, which records the ticket's id
and tells the user.

The ticketing system: ``TICKETS_URL`` (a ``POST`` of the ticket as JSON, with an
``Idempotency-Key`` header, answering ``{"id": ...}``); unset, a local file
(``.data/tickets.jsonl``) stands in for it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypedDict

from bot import (
    Bot,
    Button,
    Effect,
    EffectCall,
    Field,
    FormErrors,
    Message,
    Modal,
    Outcome,
    Reply,
    effect,
)

URGENCIES = ("low", "normal", "high")
FORM = "intake:form"
OPEN = "intake:open"
URGENCY = "intake:urgency"
CANCEL = "intake:cancel"
MAX_TITLE = 150
MAX_DETAILS = 3000


class State(TypedDict):
    step: str | None  # what the bot asked for on Messenger: "title", "details", "urgency"
    draft: dict[str, str]
    filing: int  # tickets handed to the effect and not yet confirmed
    tickets: list[dict[str, str]]


HELP = "Say `ticket` to file a support ticket, `tickets` to see yours."


class Intake(Bot[State]):
    commands: ClassVar[tuple[str, ...]] = ("/ticket",)
    action_prefix: ClassVar[str | None] = "intake:"

    def initial_state(self) -> State:
        return {"step": None, "draft": {}, "filing": 0, "tickets": []}

    # -- the turn (pure) ---------------------------------------------------------------------

    def turn(self, state: State, message: Message) -> Outcome[State]:
        if message.kind == "effect" and message.action == "file_ticket":
            return self._filed(state, message)
        if message.kind == "submission" and message.action == FORM:
            if not " ".join((message.form.get("title") or "").split()):
                # Keeps the modal open, the message under the field.
                return Outcome(state, [FormErrors({"title": "A ticket needs a title."})])
            return self._submit(state, dict(message.form))
        if message.action == CANCEL:
            return Outcome({**state, "step": None, "draft": {}}, ["OK, dropped."])
        if message.action == OPEN or message.kind == "command":
            return Outcome(state, [_form()])
        if message.action == URGENCY and state["step"] == "urgency":
            return self._submit(state, {**state["draft"], "urgency": message.value or "normal"})

        text = " ".join(message.text.split())
        word = text.lower()
        if state["step"] and word == "cancel":
            return Outcome({**state, "step": None, "draft": {}}, ["OK, dropped."])
        if state["step"] == "title" and text:
            draft = {"title": text[:MAX_TITLE]}
            return Outcome({**state, "step": "details", "draft": draft}, ["What happened?"])
        if state["step"] == "details" and text:
            draft = {**state["draft"], "details": text[:MAX_DETAILS]}
            buttons = [Button(u.capitalize(), URGENCY, u) for u in URGENCIES]
            return Outcome(
                {**state, "step": "urgency", "draft": draft},
                [Reply("How urgent is it?", buttons)],
            )
        if word in ("ticket", "new ticket", "/ticket"):
            if message.platform == "slack":
                return Outcome(
                    state, [Reply("Let's file a ticket.", [Button("Open the form", OPEN)])]
                )
            return Outcome(
                {**state, "step": "title", "draft": {}},
                ["Let's file a ticket. What is it about, in one line? (`cancel` to stop)"],
            )
        if word == "tickets":
            return Outcome(state, [_list(state)])
        return Outcome(state, [HELP])

    def _submit(self, state: State, form: dict[str, str]) -> Outcome[State]:
        title = " ".join((form.get("title") or "").split())[:MAX_TITLE]
        details = (form.get("details") or "").strip()[:MAX_DETAILS]
        urgency = form.get("urgency") if form.get("urgency") in URGENCIES else "normal"
        if not title:
            return Outcome(state, ["A ticket needs a title: say `ticket` to start again."])
        ticket = {"title": title, "details": details, "urgency": str(urgency)}
        new: State = {**state, "step": None, "draft": {}, "filing": state["filing"] + 1}
        return Outcome(
            new,
            [Reply(f"Filing “{title}” ({urgency})…")],
            [Effect("file_ticket", ticket)],
        )

    def _filed(self, state: State, message: Message) -> Outcome[State]:
        filing = max(state["filing"] - 1, 0)
        if message.error or not isinstance(message.result, Mapping):
            why = message.error or "no answer"
            return Outcome(
                {**state, "filing": filing},
                [f"I could not file it ({why}). Say `ticket` to try again."],
            )
        ticket = {"id": str(message.result["id"]), "title": str(message.result.get("title", ""))}
        return Outcome(
            {**state, "filing": filing, "tickets": [*state["tickets"], ticket][-20:]},
            [Reply(f"Filed {ticket['id']}: “{ticket['title']}”. We'll be in touch.")],
        )

    # -- the effect (runs once, after the commit; may do I/O) -----------------------------------

    @effect("file_ticket", slow=True)
    def file_ticket(self, args: Mapping[str, Any], call: EffectCall) -> dict[str, str]:
        ticket = {
            **args,
            "reporter": f"{call.message.platform}:{call.message.user}",
        }
        url = os.environ.get("TICKETS_URL")
        if url:
            import requests

            answer = requests.post(
                url, json=ticket, headers={"Idempotency-Key": call.key}, timeout=(3.05, 10)
            )
            answer.raise_for_status()
            return {"id": str(answer.json()["id"]), "title": str(args["title"])}
        return {"id": _local_file(ticket, call.key), "title": str(args["title"])}


def _form() -> Modal:
    return Modal(
        action=FORM,
        title="New ticket",
        fields=(
            Field("title", "What is it about?", placeholder="One line"),
            Field("details", "What happened?", multiline=True, optional=True),
            Field("urgency", "How urgent?", options=URGENCIES, initial="normal"),
        ),
        submit="File it",
        fallback="Say `ticket` and I'll ask you field by field.",
    )


def _list(state: State) -> Reply:
    if not state["tickets"]:
        pending = " (one is being filed)" if state["filing"] else ""
        return Reply(f"You have no tickets yet{pending}.")
    lines = [f"• {t['id']}: {t['title']}" for t in state["tickets"]]
    return Reply("Your tickets:\n" + "\n".join(lines))


_lock = threading.Lock()


def _local_file(ticket: Mapping[str, Any], key: str) -> str:
    """The stand-in ticketing system: one JSON line per ticket, deduplicated by the effect's
    idempotency key as a real one would."""
    path = Path(os.environ.get("TICKETS_FILE", ".data/tickets.jsonl"))
    with _lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            stored = json.loads(line)
            if stored["key"] == key:
                return str(stored["id"])
        number = f"T-{len(lines) + 1}"
        with path.open("a") as out:
            out.write(json.dumps({"id": number, "key": key, **ticket}) + "\n")
        return number


bot = Intake()
