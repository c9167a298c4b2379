"""The local scheduler beside ``make offline``'s emulator: fires the bots' timers.

Under serverless-offline the deploy's functions run as in Lambda, where EventBridge Scheduler
would fire a timer by invoking the function with the schedule's payload. Locally, ``make
offline`` points the functions at an SQLite file of schedules (``SESSIONS_TIMERS_DB``: a
committed turn writes its timers' schedules there) and runs this loop beside the emulator: a
due schedule is handed to the function through the emulator's Lambda API (``POST
/2015-03-31/functions/<service>-<stage>-<target>/invocations``, as the scheduler invokes it);
a fire that fails is tried again later, as the same occurrence.

    python -m handlers.tools.offline --timers-db .data/offline-timers.sqlite3 \\
        --lambda-url http://127.0.0.1:3002
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

import requests

from handlers.pipeline.timers import TimerLoop, next_time
from sessions.schedules import SQLiteScheduler


class LambdaFire:
    """Hands a due schedule's payload to its function through a Lambda invoke API (the
    emulator's); raises when the function failed, so that the loop tries it again."""

    def __init__(self, lambda_url: str, *, service: str, stage: str) -> None:
        self.lambda_url = lambda_url.rstrip("/")
        self.prefix = f"{service}-{stage}"
        self.http = requests.Session()

    def __call__(self, target: str, payload: Mapping[str, Any]) -> None:
        name = f"{self.prefix}-{target}"
        answer = self.http.post(
            f"{self.lambda_url}/2015-03-31/functions/{name}/invocations",
            data=json.dumps(dict(payload)),
            headers={
                "content-type": "application/json",
                "x-amz-invocation-type": "RequestResponse",
            },
            timeout=120,
        )
        if answer.status_code >= 300 or answer.headers.get("x-amz-function-error"):
            raise RuntimeError(f"{name} answered {answer.status_code} to a timer's fire")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make offline (timers)", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--timers-db", required=True, help="the schedules' SQLite file")
    parser.add_argument("--lambda-url", required=True, help="the emulator's Lambda API")
    parser.add_argument("--service", default="chat-sessions")
    parser.add_argument("--stage", default="offline")
    args = parser.parse_args(argv)
    scheduler = SQLiteScheduler(args.timers_db, next_time=next_time)
    loop = TimerLoop(scheduler, LambdaFire(args.lambda_url, service=args.service, stage=args.stage))
    stopped = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    loop.start()
    print(f"Timers: fired from {args.timers_db} through {args.lambda_url}", flush=True)
    while not stopped.wait(0.5):
        pass
    loop.stop()
    scheduler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
