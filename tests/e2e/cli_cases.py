"""Runs `obstop` commands through the CLI's own entry point, in one process, one after the other: reads a JSON
list of argument lists on stdin, writes a JSON list of {exit_code, stdout, stderr, exception} on stdout.
(One process for many cases: the bad-config table runs in seconds, and no global state of a command,
logging or signal handlers, leaks into the test process.)

    python -m tests.e2e.cli_cases < cases.json
"""

from __future__ import annotations

import json
import os
import sys

from typer.testing import CliRunner


def main() -> None:
    from obstop.cli import app

    for name in [k for k in os.environ if k.startswith("OBSTOP_")]:
        del os.environ[name]
    results = []
    for args in json.load(sys.stdin):
        result = CliRunner().invoke(app, args, catch_exceptions=True)
        escaped = result.exception if not isinstance(result.exception, SystemExit) else None
        results.append(
            {
                "args": args,
                "exit_code": result.exit_code,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "exception": repr(escaped) if escaped is not None else None,
            }
        )
    json.dump(results, sys.__stdout__)


if __name__ == "__main__":
    main()
