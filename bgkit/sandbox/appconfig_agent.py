"""The AWS AppConfig Agent, as the sandbox runs it on loopback beside a service.

AWS (UG "How to use AWS AppConfig Agent to retrieve configuration data", "Retrieving basic
and multi-variant feature flags"): the agent serves
`GET /applications/{app}/environments/{env}/configurations/{profile}` on localhost, fetching
the configuration with the appconfigdata session API and polling it in the background. For a
feature-flag profile, `?flag=KEY` (repeatable) selects flags; one flag is answered on its own,
several as a map. A request's `Context` headers (`key=value`, repeated or comma-separated)
are the context its flags' variant rules are evaluated with (bgkit.flags.rules); each flag is
answered as `{"_variant": name, "enabled": ..., attributes...}`.

Entity-based gradual deployments (same page, agent 2.0.136060 and later): with an `Entity-Id`
header, the agent serves that entity either the new or the previous configuration version for
the whole deployment, so a user keeps what they got as the percentage grows. The AWS agent
learns the deployment's progress from AppConfig by a protocol AWS does not publish; this
agent reads it from the sandbox's AppConfig at each poll (new version, previous version,
PercentageComplete) and places each entity by a stable hash of its id and the deployment.
Without `Entity-Id`, a request gets what the agent's own session got.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any
from urllib.parse import parse_qs, unquote

from ..aws import AwsSession
from ..flags.rules import RuleError, evaluate
from .http import KeepAliveHandler, LoopbackServer, LoopErrors


class _Configuration:
    """One (application, environment, profile) the agent serves, kept fresh by its poller."""

    def __init__(self) -> None:
        self.session_content: bytes = b""
        self.session_version: str | None = None
        self.new: tuple[str | None, Any] = (None, None)  # (version, parsed document)
        self.previous: tuple[str | None, Any] = (None, None)
        self.percent = 0.0
        self.ready = threading.Event()


class AppConfigAgent:
    def __init__(self, session: AwsSession, appconfig: Any, poll_seconds: float = 1.0) -> None:
        self._data = session.client("appconfigdata")
        self._appconfig = appconfig  # the sandbox's AppConfig (bgkit.sandbox.appconfig)
        self.poll_seconds = poll_seconds
        self._configurations: dict[tuple[str, str, str], _Configuration] = {}
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._errors = LoopErrors("AppConfig Agent")
        self._server = LoopbackServer(self._handler(), name="bgkit-appconfig-agent")
        self._thread = threading.Thread(
            target=self._poll_loop, name="bgkit-agent-poll", daemon=True
        )
        self._documents: dict[tuple[str, str, str], Any] = {}  # (app, profile, version) -> doc
        # a fault knob: True, the agent stops polling and serves what it has (a stale cache)
        self.stale = False

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> AppConfigAgent:
        self._server.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.stop()
        self._thread.join(timeout=5)

    def prefetch(self, application: str, environment: str, profile: str) -> None:
        """Start polling a configuration before the first request asks (PREFETCH_LIST)."""
        self._configuration((application, environment, profile))

    # -- polling -------------------------------------------------------------------------

    def _configuration(self, key: tuple[str, str, str]) -> _Configuration:
        with self._lock:
            found = self._configurations.get(key)
            if found is None:
                found = self._configurations[key] = _Configuration()
        if not found.ready.is_set():
            self._poll(key, found)
        return found

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            if self.stale:
                continue
            with self._lock:
                items = list(self._configurations.items())
            for key, configuration in items:
                try:
                    self._poll(key, configuration)
                except Exception as error:  # the last good configuration stays served
                    self._errors("poll", error)

    def _poll(self, key: tuple[str, str, str], configuration: _Configuration) -> None:
        application, environment, profile = key
        token = self._tokens.get(key)
        if token is None:
            token = self._data.start_configuration_session(
                ApplicationIdentifier=application,
                EnvironmentIdentifier=environment,
                ConfigurationProfileIdentifier=profile,
                RequiredMinimumPollIntervalInSeconds=15,
            )["InitialConfigurationToken"]
        answer = self._data.get_latest_configuration(ConfigurationToken=token)
        self._tokens[key] = answer["NextPollConfigurationToken"]
        content = answer["Configuration"].read()
        if content:
            configuration.session_content = content
            configuration.session_version = answer.get("VersionLabel") or None
        app_id, env_id, profile_id = self._appconfig.ids(application, environment, profile)
        new, previous, percent = self._appconfig.rollout(app_id, env_id, profile_id)
        configuration.new = (new, self._document(app_id, profile_id, new))
        configuration.previous = (previous, self._document(app_id, profile_id, previous))
        configuration.percent = percent
        configuration.ready.set()

    def _document(self, application: str, profile: str, version: str | None) -> Any:
        if version is None:
            return None
        key = (application, profile, version)
        if key not in self._documents:
            content, _ = self._appconfig.content(application, profile, version)
            self._documents[key] = json.loads(content)
        return self._documents[key]

    # -- serving -------------------------------------------------------------------------

    def answer(
        self, key: tuple[str, str, str], flags: list[str], context: dict[str, str], entity: str
    ) -> tuple[int, dict[str, Any] | str, str | None]:
        """(status, body, configuration version) for one request."""
        configuration = self._configuration(key)
        if entity and configuration.new[0] is not None:
            version, document = configuration.previous
            place = _place(entity, f"{key}:{configuration.new[0]}")
            if place < configuration.percent or document is None:
                version, document = configuration.new
        else:
            version = configuration.session_version
            document = json.loads(configuration.session_content or b"null")
        if document is None:
            return 404, "no configuration has been deployed to this environment", None
        values = document.get("values", {})
        wanted = flags or list(document.get("flags", {}))
        unknown = [f for f in wanted if f not in document.get("flags", {})]
        if unknown:
            return 404, f"no flag {unknown[0]!r} in this configuration", version
        try:
            evaluated = {f: _flag(values.get(f) or {}, context) for f in wanted}
        except RuleError as error:
            return 500, f"a variant rule could not be evaluated: {error}", version
        if len(flags) == 1:
            return 200, evaluated[flags[0]], version
        return 200, evaluated, version

    def _handler(self) -> type[KeepAliveHandler]:
        agent = self

        class Handler(KeepAliveHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                parts = [unquote(p) for p in path.strip("/").split("/")]
                if (
                    len(parts) != 6
                    or parts[0] != "applications"
                    or parts[2] != "environments"
                    or parts[4] != "configurations"
                ):
                    self.reply(404, b'{"message": "not found"}')
                    return
                context: dict[str, str] = {}
                for header in self.headers.get_all("Context") or []:
                    for pair in header.split(","):
                        name, sep, value = pair.strip().partition("=")
                        if sep:
                            context[name.strip()] = value.strip()
                entity = self.headers.get("Entity-Id", "")
                try:
                    status, body, version = agent.answer(
                        (parts[1], parts[3], parts[5]),
                        parse_qs(query).get("flag", []),
                        context,
                        entity[:2048],
                    )
                except Exception as error:  # AppConfig did not answer: the agent's 502
                    status, body, version = 502, f"{type(error).__name__}: {error}", None
                if isinstance(body, str):
                    body = {"message": body}
                self.send_response(status)
                data = json.dumps(body).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if version:
                    self.send_header("Configuration-Version", str(version))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _flag(value: dict[str, Any], context: dict[str, str]) -> dict[str, Any]:
    variants = value.get("_variants")
    if not variants:  # a basic flag: its attributes only when enabled
        attributes = {k: v for k, v in value.items() if not k.startswith("_")}
        return attributes if value.get("enabled") else {"enabled": False}
    for variant in variants:
        rule = variant.get("rule")
        if rule is None or evaluate(rule, context):
            return {
                "_variant": variant["name"],
                "enabled": bool(variant.get("enabled")),
                **(variant.get("attributeValues") or {}),
            }
    return {"enabled": False}


def _place(entity: str, deployment: str) -> float:
    digest = hashlib.sha256(f"{deployment}\x00{entity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100
