"""``make offline`` serves ``make chat`` what it needs: the bot's slash commands (from the
fake APIs' ``/healthz``, the emulator serves the deploy's routes only) and its timers, fired
by the local scheduler beside the emulator through its Lambda port."""

from __future__ import annotations

from pathlib import Path

import requests

from handlers.tools.chat import ChatClient
from tests.dynamodb_local import free_port
from tests.e2e.test_offline import serverless_offline


def test_make_offline_serves_the_commands_and_fires_the_timers(
    dynamodb_endpoint: str, local_table: str, tmp_path: Path
) -> None:
    fake_port = free_port()
    timers_db = tmp_path / "timers.sqlite3"
    with serverless_offline(
        dynamodb_endpoint,
        local_table,
        tmp_path,
        api_urls=False,
        fake_port=fake_port,
        SESSIONS_TIMERS_DB=str(timers_db),
    ) as (url, fake, log):
        secrets = {k: v for k, v in fake.edge_env().items() if not k.endswith("_URL")}
        outbox = f"http://127.0.0.1:{fake_port}"
        assert requests.get(f"{url}/healthz", timeout=5).status_code != 200  # not served
        slack = ChatClient(url, platform="slack-dm", secrets=secrets, outbox=outbox)
        assert slack.commands == ["/todo"]  # from the fakes beside the emulator
        listed = slack.send("/todo add stretch")  # a slash command, answered in its ack
        assert listed == ["Added “stretch”. You have 1 item."], listed
        assert slack.send("remind me about 1 in 3 seconds") == [
            "OK, I'll remind you about “stretch” in 3 seconds."
        ]
        fired: list[str] = []
        for _ in range(24):  # the loop polls twice a second; the emulator starts a process
            fired = fired or slack.more(timeout=5)
        assert fired == ["⏰ Reminder: “stretch”\n  #1 [Done]"], log.read_text()[-3000:]
        assert slack.more(timeout=3) == []  # once
        assert "no scheduler is configured" not in log.read_text()
