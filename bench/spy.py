"""py-spy on a running process for the length of a block: collapsed stacks (bench/profsum.py sums them)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def require() -> str:
    exe = shutil.which("py-spy")
    if exe is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    return exe


@contextmanager
def py_spy(pid: int, out: Path, rate: int = 250) -> Iterator[Path]:
    """Sample pid (without pausing it) until the block ends; out gets py-spy's raw collapsed stacks."""
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [require(), "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--format", "raw"]
    proc = subprocess.Popen(
        [*argv, "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # attached once it says so; at EOF (it failed) the block runs unprofiled
        if "Sampling process" in line:
            break
    try:
        yield out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
