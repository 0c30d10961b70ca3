"""Lambda for the sandbox: function versions' Python handlers run in this process.

There are no containers here, and moto's Invoke needs Docker, so the sandbox runs each
version's handler itself, from the code moto stored for that version. What it follows:

* Alias routing (Lambda Developer Guide, "Implement Lambda canary deployments using a
  weighted alias"): an invocation of an alias runs `AdditionalVersionWeights` versions with
  their weights, the alias's `FunctionVersion` otherwise; the response names the
  executed version (X-Amz-Executed-Version).
* Invoke (API Reference, Invoke): status 200; an unhandled exception sets
  X-Amz-Function-Error: Unhandled and returns errorMessage/errorType.
* Metrics ("Types of metrics for Lambda functions", "Viewing metrics for functions and
  aliases"): namespace AWS/Lambda, Invocations, Errors and Duration (milliseconds, raw values
  so percentiles work), per FunctionName, Resource (function:alias) and ExecutedVersion for
  alias invocations, at 1-second resolution.
* Function URLs: the sandbox's HTTP front for an alias answers 200 with the handler's body,
  or 502 when the function errs.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from ..aws import AwsSession
from .extensions import distribution
from .http import KeepAliveHandler, LoopbackServer

_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")


class LocalLambda:
    def __init__(self, session: AwsSession, *, alias_refresh_seconds: float = 0.2) -> None:
        self._lambda = session.client("lambda")
        self._cloudwatch = session.client("cloudwatch")
        self.account_id = "123456789012"
        self.region = session.region
        self._modules: dict[tuple[str, str], Any] = {}
        self._aliases: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._alias_refresh = alias_refresh_seconds
        self._lock = threading.RLock()
        self._endpoint_url = session.endpoint_url
        self._credentials = (session.access_key_id, session.secret_access_key)
        self._seconds: dict[tuple[str, str, str, int], list[float]] = defaultdict(list)
        self._errors: dict[tuple[str, str, str, int], int] = defaultdict(int)
        self._dir: Path | None = None  # made when the first handler is loaded
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._publish_loop, name="bgkit-lambda-metrics", daemon=True
        )

    def start(self) -> LocalLambda:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._publish(flush_all=True)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    # -- invocation -----------------------------------------------------------------------

    def resolve(self, function: str, qualifier: str | None) -> str:
        """The version an invocation runs: a version number, $LATEST, or by the alias's weights."""
        if qualifier is None or qualifier == "$LATEST" or qualifier.isdigit():
            return qualifier or "$LATEST"
        alias = self._alias(function, qualifier)
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        draw = random.random()
        for version, weight in weights.items():
            if draw < weight:
                return version
            draw -= weight
        return alias["FunctionVersion"]

    def invoke(
        self, function: str, qualifier: str | None, payload: Any
    ) -> tuple[str, str | None, Any]:
        """Run one invocation. Returns (executed version, function error or None, result)."""
        version = self.resolve(function, qualifier)
        handler = self._handler(function, version)
        context = _Context(function, version, self.region, self.account_id, qualifier)
        started = time.perf_counter()
        error = None
        try:
            result = handler(payload, context)
        except Exception as exc:  # the function's own failure, reported as Lambda reports it
            error, result = "Unhandled", {"errorMessage": str(exc), "errorType": type(exc).__name__}
        duration_ms = 1000 * (time.perf_counter() - started)
        if qualifier and not qualifier.isdigit() and qualifier != "$LATEST":
            key = (function, f"{function}:{qualifier}", version, int(time.time()))
            with self._lock:
                self._seconds[key].append(round(duration_ms, 2))
                if error:
                    self._errors[key] += 1
        return version, error, result

    def invoke_isolated(self, function: str, payload: Any) -> tuple[str | None, Any]:
        """Run one invocation in a worker process with the function's environment variables and
        the SDK pointed at the sandbox (see lambda_worker). For functions that call AWS, such as
        lifecycle hooks. Returns (function error or None, result)."""
        import subprocess
        import sys

        from moto.awslambda.models import lambda_backends

        stored = lambda_backends[self.account_id][self.region].get_function(function, None)
        folder = self._code(function, "isolated", stored.code_bytes)
        module_file, _, attribute = stored.handler.rpartition(".")
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "SYSTEMROOT", "TMPDIR")},
            **stored.environment_vars,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self._credentials[0],
            "AWS_SECRET_ACCESS_KEY": self._credentials[1],
            "AWS_ENDPOINT_URL": self._endpoint_url or "",
            "AWS_LAMBDA_FUNCTION_NAME": function,
            # Never the host's own AWS configuration: the sandbox's credentials only.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bgkit.sandbox.lambda_worker", str(folder),
                 f"{module_file.replace('.', '/')}.py", attribute],
                input=json.dumps(payload), capture_output=True, text=True, env=env,
                timeout=stored.timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return f"Task timed out after {stored.timeout} seconds", None
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            return f"Runtime.ExitError: {done.stderr.strip()[-300:]}", None
        if "error" in answer:
            return "Unhandled", {"errorMessage": answer["error"], "errorType": answer["type"]}
        return None, answer["result"]

    def _code(self, function: str, version: str, code: bytes) -> Path:
        """The function version's code, unpacked into the sandbox's own temporary folder."""
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="bgkit-lambda-"))
            folder = self._dir / function / version
            if not folder.exists():
                with zipfile.ZipFile(io.BytesIO(code)) as archive:
                    archive.extractall(folder)
            return folder

    def _alias(self, function: str, name: str) -> dict[str, Any]:
        now = time.monotonic()
        cached = self._aliases.get((function, name))
        if cached is None or now - cached[0] > self._alias_refresh:
            alias = self._lambda.get_alias(FunctionName=function, Name=name)
            cached = (now, alias)
            self._aliases[(function, name)] = cached
        return cached[1]

    def _handler(self, function: str, version: str):  # type: ignore[no-untyped-def]
        key = (function, version)
        with self._lock:
            if key not in self._modules:
                from moto.awslambda.models import lambda_backends

                stored = lambda_backends[self.account_id][self.region].get_function(
                    function, version
                )
                module_file, _, attribute = stored.handler.rpartition(".")
                folder = self._code(function, version, stored.code_bytes)
                spec = importlib.util.spec_from_file_location(
                    f"bgkit_lambda_{uuid.uuid4().hex}",
                    folder / f"{module_file.replace('.', '/')}.py",
                )
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                self._modules[key] = getattr(module, attribute)
            return self._modules[key]

    # -- metrics --------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        while not self._stop.wait(1.0 - (time.time() % 1.0) + 0.05):
            try:
                self._publish()
            except Exception as error:  # the next second retries; say so on stderr
                print(
                    f"bgkit sandbox lambda: metrics failed: {type(error).__name__}: {error}",
                    flush=True,
                )

    def _publish(self, flush_all: bool = False) -> None:
        now = int(time.time())
        with self._lock:
            done = [k for k in self._seconds if flush_all or k[3] < now]
            buckets = {k: (self._seconds.pop(k), self._errors.pop(k, 0)) for k in done}
        data = []
        for (function, resource, version, second), (durations, errors) in buckets.items():
            dims = [
                {"Name": "FunctionName", "Value": function},
                {"Name": "Resource", "Value": resource},
                {"Name": "ExecutedVersion", "Value": version},
            ]
            base = {
                "Dimensions": dims,
                "Timestamp": datetime.fromtimestamp(second, UTC),
                "StorageResolution": 1,
            }
            data.append(
                {**base, "MetricName": "Invocations", "Value": len(durations), "Unit": "Count"}
            )
            data.append({**base, "MetricName": "Errors", "Value": errors, "Unit": "Count"})
            counts: dict[float, int] = defaultdict(int)
            for value in durations:
                counts[value] += 1
            data.extend(distribution(base, "Duration", "Milliseconds", counts))
        for chunk in range(0, len(data), 500):
            self._cloudwatch.put_metric_data(
                Namespace="AWS/Lambda", MetricData=data[chunk : chunk + 500]
            )


class _Context:
    def __init__(
        self, function: str, version: str, region: str, account: str, qualifier: str | None
    ) -> None:
        self.function_name = function
        self.function_version = version
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function}" + (
            f":{qualifier}" if qualifier else ""
        )
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = 128
        self._deadline = time.monotonic() + 30

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(1000 * (self._deadline - time.monotonic())))


class LambdaInvoke:
    """The Invoke API (REST: POST /2015-03-31/functions/{name}/invocations), served before moto."""

    def __init__(self, runtime: LocalLambda) -> None:
        self.runtime = runtime

    def matches(self, environ: dict[str, Any]) -> bool:
        return environ.get("REQUEST_METHOD") == "POST" and bool(
            _INVOKE_PATH.match(environ.get("PATH_INFO", ""))
        )

    def respond(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        name = unquote(_INVOKE_PATH.match(environ["PATH_INFO"]).group(1))
        if name.startswith("arn:"):
            name = name.split(":")[6]
        qualifier = parse_qs(environ.get("QUERY_STRING", "")).get("Qualifier", [None])[0]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        payload = json.loads(environ["wsgi.input"].read(length) or b"{}")
        try:
            version, error, result = self.runtime.invoke(name, qualifier, payload)
        except Exception as exc:  # no such function/alias/version: answer as Lambda does
            body = json.dumps({"Type": "User", "Message": f"{type(exc).__name__}: {exc}"}).encode()
            return (
                404,
                [
                    ("Content-Type", "application/json"),
                    ("x-amzn-ErrorType", "ResourceNotFoundException"),
                ],
                body,
            )
        headers = [("Content-Type", "application/json"), ("X-Amz-Executed-Version", version)]
        if error:
            headers.append(("X-Amz-Function-Error", error))
        return 200, headers, json.dumps(result).encode()


class FunctionUrl:
    """An HTTP front for one alias, like a Lambda function URL: each request is one invocation."""

    def __init__(self, runtime: LocalLambda, function: str, alias: str) -> None:
        self._runtime, self._function, self._alias = runtime, function, alias
        self._server = LoopbackServer(self._handler(), name=f"bgkit-url-{function}")

    @property
    def url(self) -> str:
        return self._server.url + "/"

    def start(self) -> FunctionUrl:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _handler(self) -> type[KeepAliveHandler]:
        front = self

        class Handler(KeepAliveHandler):
            def do_GET(self) -> None:
                event = {"rawPath": self.path, "requestContext": {"http": {"method": "GET"}}}
                _, error, result = front._runtime.invoke(front._function, front._alias, event)
                if error:
                    self.reply(502, b'{"message": "Internal Server Error"}')
                else:
                    self.reply(
                        int(result.get("statusCode", 200)), str(result.get("body", "")).encode()
                    )

        return Handler
