"""The `obstop` console script (and `python -m obstop`): `obstop agent` goes straight to the agent daemon,
everything else to the CLI (obstop.cli, typer).

The agent runs on every host, started by systemd: it must start fast and stay small, so its command line is
read here with argparse, and neither typer, click, rich, httpx nor the controller is ever imported by it.
`obstop agent` behaves the same through the typer app (obstop/cli/agent.py calls run_agent too), which
`obstop --help` lists.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

AGENT_HELP = "The agent daemon: stops this host's observers (and those of hosts it reaches over SSH)."


def _structlog_without_rich() -> None:
    """structlog.dev imports rich (and pygments with it) when installed, for tracebacks on a terminal: about
    10 MB and a tenth of a second the agent never uses. Imported while `rich` is marked absent, structlog
    formats tracebacks as plain text; rich stays importable for anyone else afterwards."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError meanwhile
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


def run_agent(config: Path) -> int:
    """Load and check config, then serve until SIGTERM; a bad config is one line on stderr and exit 2."""
    _structlog_without_rich()
    import asyncio

    from obstop.agent.daemon.agent import serve
    from obstop.agent.daemon.config import check_agent_config, load_agent_config
    from obstop.agent.errors import ConfigError
    from obstop.logs import setup

    try:
        cfg = load_agent_config(config)
        check_agent_config(cfg, config)  # the whole file checked before anything starts
        setup(cfg.log_level)
        asyncio.run(serve(cfg))
    except ConfigError as exc:
        message = " ".join(str(exc).split())  # one line, always naming the file
        print(f"error: {message if str(config) in message else f'{config}: {message}'}", file=sys.stderr)
        return 2
    return 0


def agent_main(argv: list[str]) -> int:
    """`obstop agent --config F` (or OBSTOP_AGENT_CONFIG=F), as the systemd unit runs it."""
    parser = argparse.ArgumentParser(prog="obstop agent", description=AGENT_HELP)
    env = os.environ.get("OBSTOP_AGENT_CONFIG")
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path(env) if env else None,
        required=not env,
        help="agent.toml  [env var: OBSTOP_AGENT_CONFIG]",
    )
    args = parser.parse_args(argv)
    return run_agent(args.config)


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["agent"]:
        sys.exit(agent_main(argv[1:]))
    from obstop.cli import app

    app()
