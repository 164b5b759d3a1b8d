"""`obstop`: one entry point for the daemons, the ops client, the demo and the fakes."""

from __future__ import annotations

import sys

import typer

from obstop import cli_observer

app = typer.Typer(
    name="obstop",
    help="Take OceanBase clusters down safely.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cli_observer.app, name="observer")


@app.command(
    "fake-observer",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def fake_observer(ctx: typer.Context) -> None:
    """The fake observer process itself (what HOME/bin/observer runs in fake hosts)."""
    from obstop.fake_observer import main

    sys.exit(main(list(ctx.args)))


def _register() -> None:
    # modules that need the controller stack are imported only when present, keeping `obstop` light
    import importlib

    for name in ("cli_keys", "cli_controller", "cli_agent", "cli_fakehosts", "cli_client", "cli_demo"):
        try:
            mod = importlib.import_module(f"obstop.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"obstop.{name}":
                raise
            continue
        mod.register(app)


_register()
