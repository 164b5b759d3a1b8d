"""The `obstop` command as an operator runs it, through the interpreter under test."""

from __future__ import annotations

import os
import subprocess

from tests.support.processes import obstop_argv


def obstop(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m obstop ARGS` to completion (wide, colourless output), capturing both streams."""
    full = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        obstop_argv(*args), capture_output=True, text=True, timeout=timeout, check=False, env=full
    )
