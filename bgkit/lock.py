"""One release per target: a lease in a DynamoDB table, taken with a conditional write.

The item's key is the target (a listener, a stage, a deployment group...: the pattern's
`target_id()`), so two runbooks that would move the same traffic exclude each other. It holds
who holds it, since when, and until when the lease runs; a thread renews the lease while the
release runs. A second release fails at once, naming the holder. A lease that ran out (its
holder was killed, or lost its network) is taken over with a write conditioned on the very
item that was read, so two newcomers cannot both take it; the takeover is recorded. A holder
on this machine (same boot, same process namespace) whose process is gone (a killed kernel) is
stale at once.

The item also keeps the release's in-flight state (`save`: its phase, step, what it changed),
written before each change. A release that dies leaves it behind; the next release of the
target finds it (`interrupted`) and rolls it back or resumes it (bgkit.release.recovery).

Create the table once per account and region (the sandbox creates it itself):

    aws dynamodb create-table --table-name bgkit-locks \\
        --attribute-definitions AttributeName=target,AttributeType=S \\
        --key-schema AttributeName=target,KeyType=HASH --billing-mode PAY_PER_REQUEST
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from .errors import PreflightError

CREATE_COMMAND = (
    "aws dynamodb create-table --table-name {table} "
    "--attribute-definitions AttributeName=target,AttributeType=S "
    "--key-schema AttributeName=target,KeyType=HASH --billing-mode PAY_PER_REQUEST"
)


def holder_name() -> str:
    """Who holds a lock: this machine and process (the operator's ARN is in the item too)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def machine_id() -> str:
    """This boot of this machine and this process namespace (Linux), or "" where unknown: a
    holder is checked for by its pid only when this matches, since two containers (or two
    machines) may share a host name but not their processes."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            return f"{boot.read().strip()}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


class ReleaseLock:
    def __init__(
        self,
        session: Any,
        table: str,
        target: str,
        release: str,
        operator: str,
        lease_seconds: float,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._dynamodb = session.client("dynamodb")
        self.table, self.target, self.release = table, target, release
        self.operator, self.lease_seconds, self._now = operator, lease_seconds, now
        self.holder = holder_name()
        self.held = False
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.lost: str | None = None  # why a renewal failed, if one did

    def interrupted(self) -> dict[str, Any] | None:
        """Read-only: the state an earlier release of this target left in its lock item when it
        died after changing something (see `save`), or None. Raises PreflightError, naming
        the holder, while the lock is held by a live release."""
        current = self._read()
        self._check_free(current)
        if current is None or "state" not in current:
            return None
        state = json.loads(current["state"]["S"])
        if not state.get("mutated"):
            return None
        return {
            **state,
            "release": current["release"]["S"],
            "operator": current["operator"]["S"],
            "holder": current["holder"]["S"],
            "since": _iso(current["acquired_at"]["N"]),
        }

    def _check_free(self, current: dict[str, Any] | None) -> None:
        if current is None or not self._alive(current):
            return
        raise PreflightError(
            f"{self.target} is locked by release {current['release']['S']} of "
            f"{current['operator']['S']} on {current['holder']['S']} since "
            f"{_iso(current['acquired_at']['N'])} (lease until "
            f"{_iso(current['lease_until']['N'])}): one release per target; wait for it, "
            f"or roll it back (lock table {self.table})"
        )

    def _alive(self, item: dict[str, Any]) -> bool:
        """A holder is alive while its lease runs, unless it ran on this machine and its
        process is gone (a killed kernel: no need to wait for the lease)."""
        if float(item["lease_until"]["N"]) <= self._now():
            return False
        pid = item["holder"]["S"].rpartition(":")[2]
        machine = item.get("machine", {}).get("S", "")
        if not machine or machine != machine_id() or not pid.isdigit():
            return True  # elsewhere (or unknown): alive until its lease ends
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        return True

    def acquire(self, state: dict[str, Any] | None = None) -> str | None:
        """Take the lock, or raise PreflightError naming its holder. Returns a note when a
        stale lock was taken over (what it said), else None. `state` is the release's
        in-flight state to start with (an interrupted release's, when this one takes it on)."""
        current = self._read()
        now = self._now()
        self._check_free(current)
        item = {
            "target": {"S": self.target},
            "release": {"S": self.release},
            "operator": {"S": self.operator},
            "holder": {"S": self.holder},
            "machine": {"S": machine_id()},
            "acquired_at": {"N": f"{now:.3f}"},
            "lease_until": {"N": f"{now + self.lease_seconds:.3f}"},
        }
        if state:
            item["state"] = {"S": json.dumps(state, sort_keys=True)}
        if current is None:
            condition = {"ConditionExpression": "attribute_not_exists(#t)"}
            names = {"#t": "target"}
            values: dict[str, Any] = {}
        else:  # stale: replace exactly the item that was read, or nothing
            condition = {"ConditionExpression": "#r = :r AND lease_until = :l"}
            names = {"#r": "release"}
            values = {":r": current["release"], ":l": current["lease_until"]}
        try:
            self._dynamodb.put_item(
                TableName=self.table,
                Item=item,
                ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": values} if values else {}),
                **condition,
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise PreflightError(
                    f"{self.target} was locked by another release at the same moment: "
                    "one release per target"
                ) from None
            raise
        self.held = True
        self._start_keeper()
        if current is None:
            return None
        why = (
            f"its lease ran out at {_iso(current['lease_until']['N'])}"
            if float(current["lease_until"]["N"]) <= now
            else f"its process {current['holder']['S']} is gone"
        )
        return (
            f"took over the stale lock of release {current['release']['S']} "
            f"({current['operator']['S']} on {current['holder']['S']}, since "
            f"{_iso(current['acquired_at']['N'])}; {why})"
        )

    def save(self, state: dict[str, Any]) -> None:
        """Keep the release's in-flight state in the lock item (in AWS, not on this machine),
        so that the next release of the target can undo or resume it if this one dies."""
        self._dynamodb.update_item(
            TableName=self.table,
            Key={"target": {"S": self.target}},
            UpdateExpression="SET #s = :s",
            **self._ours({":s": {"S": json.dumps(state, sort_keys=True)}}, {"#s": "state"}),
        )

    def abandon(self) -> None:
        """Give the lock up but keep its state: the release failed and traffic may not be
        where it should; the lease ends now, so the next release takes it on at once."""
        if not self._let_go():
            return
        try:
            self._dynamodb.update_item(
                TableName=self.table,
                Key={"target": {"S": self.target}},
                UpdateExpression="SET lease_until = :l",
                **self._ours({":l": {"N": f"{self._now():.3f}"}}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise  # (taken over meanwhile: the state is the newcomer's now)

    def renew(self) -> None:
        """Extend the lease; only while this release holds it."""
        self._dynamodb.update_item(
            TableName=self.table,
            Key={"target": {"S": self.target}},
            UpdateExpression="SET lease_until = :l",
            **self._ours({":l": {"N": f"{self._now() + self.lease_seconds:.3f}"}}),
        )

    def release_lock(self) -> bool:
        """Give the lock up (only ours). True if this call released it."""
        if not self._let_go():
            return False
        try:
            self._dynamodb.delete_item(
                TableName=self.table,
                Key={"target": {"S": self.target}},
                **self._ours(),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False  # someone took it over after our lease ran out: theirs now
            raise
        return True

    def _let_go(self) -> bool:
        """Stop renewing; True if the lock was still held by this object (now no longer)."""
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=10)
        held, self.held = self.held, False
        return held

    def _ours(
        self, values: dict[str, Any] | None = None, names: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The condition of a write that only this release's lock may take."""
        return {
            "ConditionExpression": "#r = :r AND holder = :h",
            "ExpressionAttributeNames": {"#r": "release", **(names or {})},
            "ExpressionAttributeValues": {
                ":r": {"S": self.release},
                ":h": {"S": self.holder},
                **(values or {}),
            },
        }

    def _read(self) -> dict[str, Any] | None:
        try:
            answer = self._dynamodb.get_item(
                TableName=self.table, Key={"target": {"S": self.target}}, ConsistentRead=True
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise PreflightError(
                    f"lock_table: DynamoDB table {self.table!r} does not exist in this account "
                    f"and region; create it once with: {CREATE_COMMAND.format(table=self.table)}"
                ) from None
            raise
        return answer.get("Item")

    def _start_keeper(self) -> None:
        def keep() -> None:
            while not self._stop.wait(self.lease_seconds / 3):
                try:
                    self.renew()
                except ClientError as error:
                    self.lost = f"{type(error).__name__}: {error}"  # the release records it
                    if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                        return  # taken over: no longer ours to renew
                except Exception as error:  # a network error: tried again at the next third
                    self.lost = f"{type(error).__name__}: {error}"

        self._keeper = threading.Thread(target=keep, name="bgkit-lock-keeper", daemon=True)
        self._keeper.start()


def _iso(epoch: str) -> str:
    return datetime.fromtimestamp(float(epoch), tz=UTC).isoformat(timespec="seconds")
