"""Messages about a release: when it starts, and when it is promoted, rolled back or fails.

Two optional channels, set by the runbook's parameters:

- `notify_topic_arn`: an SNS topic (its subscribers: email, chat, a queue, a pager). One
  `sns:Publish` per message, through the release's own AWS session.
- `notify_webhook`: a URL that takes a JSON POST (a chat's incoming webhook: Slack and Mattermost
  read its `text`). A webhook URL carries its own credential, so it is a secret
  (`BGKIT_SECRET_NOTIFY_WEBHOOK`) and is never shown, not even in an error.

Each message names the release, the runbook, the target, the operator, the outcome and reason,
where traffic is, and where the record is (`BGKIT_RECORD`, which bgkit's papermill engine sets to
the executed notebook's path or s3:// URL). A message that cannot be sent never stops or changes
the release: the record says it was not sent, and why.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from typing import Any

RECORD_ENV = "BGKIT_RECORD"
TIMEOUT_SECONDS = 10.0
_TITLES = {
    "started": "started",
    "promoted": "promoted: green has all traffic",
    "rolled_back": "rolled back: blue has all traffic",
    "failed": "FAILED",
}


@dataclass
class Notifier:
    session: Any  # bgkit.aws.AwsSession
    topic_arn: str = ""
    webhook_url: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.topic_arn or self.webhook_url)

    def send(self, event: str, record: Any, split: dict[str, int] | None) -> list[str]:
        """Send `event` (started, promoted, rolled_back, failed) about `record` on each channel.

        Returns one line per channel for the record: sent, or not sent and why.
        """
        message = self.message(event, record, split)
        results = []
        if self.topic_arn:
            results.append(self._channel("SNS topic " + self.topic_arn, self._sns, message))
        if self.webhook_url:
            results.append(self._channel("webhook", self._webhook, message))
        return results

    @staticmethod
    def message(event: str, record: Any, split: dict[str, int] | None) -> dict[str, Any]:
        where = ", ".join(f"{c} {p}%" for c, p in (split or {}).items()) or "unknown"
        title = f"bgkit {record.runbook} release {record.release}: {_TITLES[event]}"
        text = f"{title}. Target {record.target_id}; traffic {where}."
        if record.reason and event != "started":
            text += f" Why: {record.reason}."
        path = os.environ.get(RECORD_ENV, "")
        if path:
            text += f" Record: {path}"
        return {
            "text": text,
            "subject": title,
            "event": event,
            "runbook": record.runbook,
            "release": record.release,
            "target_id": record.target_id,
            "operator": record.operator,
            "outcome": record.outcome if event != "started" else None,
            "reason": record.reason if event != "started" else None,
            "split": split,
            "record": path or None,
        }

    def _channel(self, name: str, send: Any, message: dict[str, Any]) -> str:
        try:
            send(message)
        except Exception as error:  # recorded by the caller; a message never stops a release
            why = _describe(error, secret_url=name == "webhook")
            return f"{message['event']} message not sent to the {name}: {why}"
        return f"{message['event']} message sent to the {name}"

    def _sns(self, message: dict[str, Any]) -> None:
        self.session.client("sns").publish(
            TopicArn=self.topic_arn,
            Subject=_subject(message["subject"]),
            Message=json.dumps(message, indent=1, default=str),
        )

    def _webhook(self, message: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.webhook_url,
            data=json.dumps(message, default=str).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "bgkit"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()


def _subject(title: str) -> str:
    """SNS subjects: at most 100 printable ASCII characters, no line breaks."""
    ascii_only = "".join(c if " " <= c <= "~" else "?" for c in title)
    return ascii_only[:100]


def _describe(error: Exception, *, secret_url: bool) -> str:
    """What went wrong. For the webhook, whose URL is a secret, only the HTTP status or the
    kind of error: urllib's messages may carry parts of the URL."""
    import urllib.error

    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if secret_url:
        cause = error.reason if isinstance(error, urllib.error.URLError) else error
        return type(cause).__name__ if isinstance(cause, Exception) else type(error).__name__
    return f"{type(error).__name__}: {error}"[:300]
