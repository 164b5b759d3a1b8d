"""`obstop controller` and `obstop passwd`."""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("controller")
    def controller(
        config: Annotated[
            Path, typer.Option("--config", "-c", help="controller.toml", envvar="OBSTOP_CONFIG")
        ],
    ) -> None:
        """The controller daemon: API, durable engine, dispatch to agents."""
        from obstop.controller.config import check_config, load_config
        from obstop.controller.daemon import serve
        from obstop.controller.errors import ConfigError, StoreLost
        from obstop.logs import setup

        try:
            cfg = load_config(config)
            check_config(cfg, config)  # the whole file checked before anything starts
            setup(cfg.log_level)
            asyncio.run(serve(cfg))
        except ConfigError as exc:
            message = " ".join(str(exc).split())  # one line, always naming the file
            typer.echo(f"error: {message if str(config) in message else f'{config}: {message}'}", err=True)
            sys.exit(2)
        except StoreLost as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(1)

    @app.command("passwd")
    def passwd(
        stdin: Annotated[bool, typer.Option("--stdin", help="read the password from standard input")] = False,
    ) -> None:
        """Print a salted hash of a password, for `password_hash` in controller.toml."""
        from obstop.controller.auth import hash_password

        if stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                typer.echo("error: the passwords differ", err=True)
                sys.exit(1)
        if not password:
            typer.echo("error: empty password", err=True)
            sys.exit(1)
        typer.echo(hash_password(password))
