"""`obstop agent` and `obstop keys generate`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("agent")
    def agent(
        config: Annotated[
            Path, typer.Option("--config", "-c", help="agent.toml", envvar="OBSTOP_AGENT_CONFIG")
        ],
    ) -> None:
        """The agent daemon: stops this host's observers (and those of hosts it reaches over SSH)."""
        from obstop.agent.daemon.agent import serve
        from obstop.agent.daemon.config import load_agent_config
        from obstop.agent.errors import ConfigError
        from obstop.logs import setup

        try:
            cfg = load_agent_config(config)
            setup(cfg.log_level)
            asyncio.run(serve(cfg))
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(2)

    keys = typer.Typer(help="Ed25519 keys for command signing.", no_args_is_help=True)
    app.add_typer(keys, name="keys")

    @keys.command("generate")
    def generate(directory: Annotated[Path, typer.Argument(help="where to write the key pair")]) -> None:
        """Write DIR/command-signing.key (private, 0600, the controller's) and DIR/command-signing.pub."""
        from obstop.agent.errors import ConfigError
        from obstop.agent.signing import generate as gen

        try:
            private, public = gen(directory)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(1)
        typer.echo(f"private key (controller [signing] private_key): {private}")
        typer.echo(f"public key (agents' controller_public_key):   {public}")
