"""`obstop`: one entry point for the daemons, the ops client, the demo and the fakes.

One module per command group; each registers its commands on the app. Heavy imports (the controller
stack, asyncssh, the MQTT client) happen inside the commands, so `obstop --help` stays light.
"""

from __future__ import annotations

import sys

import typer

from obstop.cli import agent, controller, demo, fakehosts, observer, ops, partial

app = typer.Typer(
    name="obstop",
    help="Take OceanBase clusters down safely, and bring them back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from obstop import __version__

        typer.echo(f"obstop {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_version
    ),
) -> None:
    """Take OceanBase clusters down safely, and bring them back."""


@app.command(
    "fake-observer",
    hidden=True,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def fake_observer(ctx: typer.Context) -> None:
    """The fake observer process itself (what HOME/bin/observer runs in fake hosts)."""
    from obstop.fakes.observer import main

    sys.exit(main(list(ctx.args)))


for group in (ops, partial, controller, agent, observer, fakehosts, demo):
    group.register(app)
