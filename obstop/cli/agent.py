"""`obstop agent` and `obstop keys generate`."""

from __future__ import annotations

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
        from obstop.entry import run_agent

        code = run_agent(config)
        if code:
            sys.exit(code)

    keys = typer.Typer(
        help="Ed25519 keys: the controller's for commands, an agent's for its events.", no_args_is_help=True
    )
    app.add_typer(keys, name="keys")

    @keys.command("generate")
    def generate(
        directory: Annotated[Path, typer.Argument(help="where to write the key pair")],
        agent: Annotated[
            str | None,
            typer.Option("--agent", help="an agent's pair, DIR/ID.key and DIR/ID.pub"),
        ] = None,
    ) -> None:
        """Write DIR/command-signing.key (private, 0600, the controller's) and DIR/command-signing.pub; with
        --agent ID, DIR/ID.key (the agent's private_key, 0600) and DIR/ID.pub (for the controller's
        [signing] agent_keys_dir)."""
        from obstop.agent.errors import ConfigError
        from obstop.agent.signing import generate as gen

        try:
            private, public = gen(directory, agent=agent)
        except (ConfigError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(1)
        if agent is None:
            typer.echo(f"private key (controller [signing] private_key): {private}")
            typer.echo(f"public key (agents' controller_public_key):   {public}")
        else:
            typer.echo(f"private key (agent {agent}'s private_key): {private}")
            typer.echo(f"public key (copy into the controller's [signing] agent_keys_dir): {public}")
