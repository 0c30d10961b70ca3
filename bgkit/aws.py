"""The one place bgkit creates boto3 clients.

Against real AWS, credentials and endpoint come from the standard boto3 chain (profile,
environment, instance role; ``AWS_ENDPOINT_URL`` is honoured by botocore itself). The
sandbox differs only by passing its loopback endpoint and throwaway credentials here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

# Throttling and 5xx are retried by botocore's standard retry mode, not by hand-written loops.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30
)
VERSION = "0.1.0"


def release_agent(runbook: str) -> str:
    """The User-Agent suffix of a release's calls: CloudTrail (and the sandbox) see which
    runbook made each call."""
    return f"bgkit/{VERSION} bgkit-runbook/{runbook}"


@dataclass
class AwsSession:
    region: str
    endpoint_url: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    agent: str = f"bgkit/{VERSION}"  # appended to botocore's User-Agent (see release_agent)
    _session: Any = field(default=None, init=False, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self._session is None:
                self._session = boto3.session.Session(
                    aws_access_key_id=self.access_key_id,
                    aws_secret_access_key=self.secret_access_key,
                    region_name=self.region,
                )
            self._clients[service] = self._session.client(
                service,
                endpoint_url=self.endpoint_url,
                config=_CONFIG.merge(Config(user_agent_extra=self.agent)),
            )
        return self._clients[service]

    def caller_arn(self) -> str:
        """The STS caller identity: who is running this release."""
        return self.client("sts").get_caller_identity()["Arn"]
