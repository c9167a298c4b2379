"""The WhatsApp edge's logs and metrics as inside Lambda (SESSIONS_TELEMETRY=on): canaries in
every field a user (or whoever holds a leaked app secret) controls never reach a log line or
a metric; a failed status is counted as ``FailedStatuses``."""

from __future__ import annotations

import json
from typing import Any

import pytest

import handlers.whatsapp
from tests import whatsapp_requests as wr
from tests.functional.test_telemetry import (  # noqa: F401  (telemetry_on: autouse here too)
    CANARY_TEXT,
    Quoting,
    _no_canary,
    context,
    lines,
    metrics_of,
    telemetry_on,
)
from tests.functional.test_whatsapp import SEND_PATH, WhatsAppWorld, whatsapp  # noqa: F401

CANARY_USER = "US.CANARY5551234"
CANARY_NUMBER = "106540352249999"


def test_no_canary_from_a_whatsapp_user_field_reaches_a_log_line_or_a_metric(
    whatsapp: WhatsAppWorld,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Texts, the user's id (a BSUID), the number, wamids (ours in a failed status too), an
    unreadable message, a button's id, a reply refused outside the window, a failing Cloud
    API: none in stdout, stderr, a log record or an EMF blob."""
    handlers.whatsapp.handler.reset()
    handlers.whatsapp.handler._edge = handlers.whatsapp.build(bot=Quoting())
    capsys.readouterr()

    def call(data: Any) -> None:
        raw = json.dumps(data).encode()
        assert handlers.whatsapp.handler(wr.post(raw), context("req-w"))["statusCode"] < 500

    def one(*messages: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return wr.webhook(wr.value(*messages, number=CANARY_NUMBER, **kw))

    for words in (CANARY_TEXT, f"boom {CANARY_TEXT}"):
        call(one(wr.text(words, user=CANARY_USER, mid=f"wamid.{CANARY_TEXT}{len(words)}")))
    call(one(wr.button_reply(f"boom {CANARY_TEXT}", CANARY_TEXT, user=CANARY_USER)))
    call(one({**wr.text(CANARY_TEXT, user=CANARY_USER), "timestamp": CANARY_TEXT}))
    call(one(statuses=(wr.status(f"wamid.{CANARY_TEXT}", "failed", user=CANARY_USER,
                                 code=131047),)))  # fmt: skip
    path = f"/v25.0/{CANARY_NUMBER}/messages"
    whatsapp.fake.failures[path] = [(400, {"error": {"code": 131047}})]
    call(one(wr.text(f"late {CANARY_TEXT}", user=CANARY_USER)))
    whatsapp.fake.failures[path] = [500, 500, 500]
    call(one(wr.text(f"again {CANARY_TEXT}", user=CANARY_USER)))
    captured = capsys.readouterr()
    _, emf = lines(captured.out)
    failed = [metrics_of(b) for b in emf if "FailedStatuses" in b]
    assert [m["FailedStatuses"] for m in failed] == [([1.0], "Count")]
    assert [sorted(d) for d in failed[0]["dimensions"]] == [["platform", "service"]]
    out = (
        captured.out
        + captured.err
        + "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    )
    assert "ERROR" in out or "error" in out, "no failure was logged: this proves nothing"
    for canary in (CANARY_TEXT, CANARY_USER, CANARY_NUMBER, "CANARY"):
        assert canary not in out, canary
