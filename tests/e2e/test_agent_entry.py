"""`obstop agent` (the systemd unit's ExecStart) starts without the CLI's stack: the process that runs the
agent daemon never imports typer, click, rich, httpx, the controller, or asyncssh when its config lists no
[[ssh]] host. The whole daemon is imported before the config is read, so a config it refuses shows every
import the daemon makes, in a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from obstop.agent import signing

NEVER = ("typer", "click", "rich", "httpx", "pygments", "asyncssh")
NEVER_OURS = ("obstop.cli", "obstop.controller")


def imported(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSTOP_")}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "obstop", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )
    names = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", out.stderr, re.M))
    return out, names


def test_obstop_agent_imports_no_cli_stack(tmp_path: Path) -> None:
    signing.generate(tmp_path / "keys")
    config = tmp_path / "agent.toml"
    # refused only when the daemon checks the files (state_dir under a file): everything is imported by then
    (tmp_path / "afile").write_text("")
    config.write_text(
        f'agent_id = "h1"\nstate_dir = "{tmp_path / "afile" / "state"}"\n'
        f'controller_public_key = "{tmp_path / "keys" / signing.PUBLIC_NAME}"\n'
    )
    out, names = imported(["agent", "--config", str(config)], tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if not line.startswith("import time:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "state_dir" in errors[0], errors
    assert "obstop.agent.daemon.agent" in names and "aiomqtt" in names, sorted(names)
    # a package really imported brings its submodules: `rich` alone is structlog's import, refused
    leaked = sorted(n for n in names if ("." in n and n.split(".")[0] in NEVER) or n.startswith(NEVER_OURS))
    assert leaked == [], leaked


def test_obstop_help_still_lists_the_agent(tmp_path: Path) -> None:
    out, names = imported(["--help"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "agent" in out.stdout and "controller" in out.stdout
    assert "typer" in names


def test_obstop_agent_without_config_says_how(tmp_path: Path) -> None:
    out, _ = imported(["agent"], tmp_path)
    assert out.returncode == 2
    assert "--config" in out.stderr
