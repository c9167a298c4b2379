"""Hand-written minimal correct handlers, one per platform path: the yardstick our whole
handler path is measured against (``benchmarks.pipeline``).

Each one does what a careful developer writes by hand for one bot turn and nothing more:
verify the platform's signature over the raw bytes, parse the body, one ``GetItem`` of the
conversation, the turn (the todo bot's ``list``), one ``PutItem`` conditional on the version
it read (no lost update), and the reply: in the ack's body for a slash command, one POST to
the same local fake API for a DM (``chat.postMessage``) and a Messenger message (Send API).
No idempotency records (a redelivery is applied again), no dead letters, no telemetry.

``benchmarks.minimal_lambda`` deploys the same handlers as one Lambda function, for the cold
start's yardstick.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs


class Minimal:
    """The three minimal handlers over one table and one HTTP session (keep-alive)."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        slack_secret: str,
        app_secret: str,
        slack_api_url: str,
        graph_url: str,
        http: Any = None,
    ) -> None:
        self.client = client
        self.table = table
        self.slack_secret = slack_secret.encode()
        self.app_secret = app_secret.encode()
        self.post_url = slack_api_url.rstrip("/") + "/chat.postMessage"
        self.send_url = graph_url.rstrip("/") + "/me/messages"
        if http is None:  # warm benchmarks: requests, as the edges' Send API client
            import requests

            http = requests.Session()
        #: Anything with requests' ``post(url, json=, headers=, params=, timeout=)``.
        self.http = http

    # -- the three paths ---------------------------------------------------------------------

    def slack_command(self, event: dict[str, Any]) -> dict[str, Any]:
        body = self._slack_body(event)
        if body is None:
            return {"statusCode": 401}
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        pk = f"slack#{form['team_id']}#{form['user_id']}"
        text = self._turn(pk, form["channel_id"], form.get("text", ""))
        answer = {"response_type": "ephemeral", "text": text}
        return {"statusCode": 200, "body": json.dumps(answer)}

    def slack_event(self, event: dict[str, Any]) -> dict[str, Any]:
        body = self._slack_body(event)
        if body is None:
            return {"statusCode": 401}
        data = json.loads(body)
        message = data["event"]
        pk = f"slack#{data['team_id']}#{message['user']}"
        text = self._turn(pk, message["channel"], message.get("text", ""))
        self.http.post(
            self.post_url,
            json={"channel": message["channel"], "text": text},
            headers={"authorization": "Bearer xoxb-test-token"},
            timeout=2,
        ).raise_for_status()
        return {"statusCode": 200}

    def messenger(self, event: dict[str, Any]) -> dict[str, Any]:
        body = _raw(event)
        header = _headers(event).get("x-hub-signature-256", "")
        expected = "sha256=" + hmac.new(self.app_secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, header):
            return {"statusCode": 403}
        for entry in json.loads(body)["entry"]:
            for item in entry["messaging"]:
                pk = f"messenger#{entry['id']}#{item['sender']['id']}"
                text = self._turn(pk, entry["id"], item["message"].get("text", ""))
                self.http.post(
                    self.send_url,
                    params={"access_token": "page-token-test"},
                    json={"recipient": {"id": item["sender"]["id"]}, "message": {"text": text}},
                    timeout=2,
                ).raise_for_status()
        return {"statusCode": 200, "body": "EVENT_RECEIVED"}

    # -- shared ----------------------------------------------------------------------------------

    def _slack_body(self, event: dict[str, Any]) -> bytes | None:
        body = _raw(event)
        headers = _headers(event)
        stamp = headers.get("x-slack-request-timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
            return None
        base = b"v0:" + stamp.encode() + b":" + body
        expected = "v0=" + hmac.new(self.slack_secret, base, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, headers.get("x-slack-signature", ""))
        return body if ok else None

    def _turn(self, pk: str, sk: str, text: str) -> str:
        """Load, the todo bot's ``add``/``list``, and a write conditional on the version read."""
        key = {"pk": {"S": pk}, "sk": {"S": sk}}
        item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        version = int(item["v"]["N"]) if item else 0
        items: list[str] = json.loads(item["state"]["S"]) if item else []
        if text.startswith("add "):
            items.append(text[4:])
        reply = "\n".join(f"{n}. {t}" for n, t in enumerate(items, 1)) or "Your list is empty."
        condition = (
            {
                "ConditionExpression": "#v = :v",
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
            if item
            else {"ConditionExpression": "attribute_not_exists(pk)"}
        )
        names = {"ExpressionAttributeNames": {"#v": "v"}} if item else {}
        self.client.put_item(
            TableName=self.table,
            Item={**key, "v": {"N": str(version + 1)}, "state": {"S": json.dumps(items)}},
            **condition,
            **names,
        )
        return reply


def _raw(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def _headers(event: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in (event.get("headers") or {}).items()}
