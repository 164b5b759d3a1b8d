"""Install and start fake observers under a home path (what `fakehosts` and the tests use)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_SCRIPT = """#!{python}
# obstop fake observer: behaves like OceanBase's observer for stop tooling. Not a database.
import sys
from obstop.fakes.observer import main
sys.exit(main())
"""


@dataclass(frozen=True)
class FakeObserver:
    home: Path
    ip: str
    sql_port: int = 2881
    rpc_port: int = 2882
    zone: str = "zone1"
    cluster_dir: Path | None = None
    misbehave: list[str] = field(default_factory=list)

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "observer.pid"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def argv(self) -> list[str]:
        args = [
            str(self.home / "bin" / "observer"),
            "--daemonize",
            "--ip",
            self.ip,
            "-p",
            str(self.sql_port),
            "-P",
            str(self.rpc_port),
            "--zone",
            self.zone,
        ]
        if self.cluster_dir:
            args += ["--cluster-dir", str(self.cluster_dir)]
        return args + self.misbehave


def install(home: Path) -> Path:
    """Lay out HOME like an observer deployment, with the fake as HOME/bin/observer."""
    for sub in ("bin", "run", "log", "etc", "store"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    binary = home / "bin" / "observer"
    binary.write_text(_SCRIPT.format(python=sys.executable))
    binary.chmod(0o755)
    return binary


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # the fake must import obstop even when obstop is run from a source tree
    src = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run(argv: list[str], home: Path, timeout: float) -> int:
    res = subprocess.run(
        argv, cwd=home, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"fake observer in {home} did not start: {res.stderr.strip()}")
    try:
        return int((home / "run" / "observer.pid").read_text().strip())
    except (OSError, ValueError):
        raise RuntimeError(f"fake observer in {home} wrote no pid file") from None


def start(fake: FakeObserver, timeout: float = 20.0) -> int:
    """Start a fake observer (daemonized, cwd HOME) and return its pid once it listens. Its arguments
    are persisted in HOME/etc, so `relaunch` (or obstop's start) brings it back the same way."""
    install(fake.home)
    return _run(fake.argv(), fake.home, timeout)


def relaunch(home: Path, timeout: float = 20.0) -> int:
    """`cd HOME && ./bin/observer`, no arguments: what observer's own restart (and an operator) does."""
    return _run(["./bin/observer"], home, timeout)
