"""One Lambda invocation in its own process, as Lambda runs a function in its own environment.

The sandbox starts this with the function's environment variables, plus the variables Lambda
sets for the SDK (region, credentials) pointing at the sandbox; the handler's boto3 clients
then reach the sandbox as they would reach AWS. Reads the event as JSON on stdin, writes
``{"result": ...}`` or ``{"error": ..., "type": ...}`` as JSON on stdout.

    python -m bgkit.sandbox.lambda_worker <code folder> <module file> <handler attribute>
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def main() -> None:
    folder, module_file, attribute = sys.argv[1:4]
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("lambda_function", Path(folder) / module_file)
    module = importlib.util.module_from_spec(spec)
    event = json.loads(sys.stdin.read() or "null")
    answer_to, sys.stdout = sys.stdout, sys.stderr  # the function's prints are its logs
    try:
        spec.loader.exec_module(module)
        answer = {"result": getattr(module, attribute)(event, None)}
    except Exception as error:  # the function's own failure, reported as Lambda reports it
        answer = {"error": str(error), "type": type(error).__name__}
    json.dump(answer, answer_to, default=str)


if __name__ == "__main__":
    main()
