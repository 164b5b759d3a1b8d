"""`obstop fakehosts up|down`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    fh = typer.Typer(
        help="Fake hosts on this machine: fake observers on 127.0.0.x, with agents.", no_args_is_help=True
    )
    app.add_typer(fh, name="fakehosts")

    @fh.command("up")
    def up(
        dir: Annotated[Path, typer.Option("--dir", help="where the fleet lives (files, logs, state)")],
        zones: Annotated[int, typer.Option(min=1, max=64)] = 3,
        servers_per_zone: Annotated[int, typer.Option(min=1, max=64)] = 1,
        broker: Annotated[
            str, typer.Option(help="MQTT broker the agents and controller use")
        ] = "mqtt://127.0.0.1:1883",
        no_agents: Annotated[
            bool, typer.Option("--no-agents", help="no agents: the controller stops them itself")
        ] = False,
        first_ip: Annotated[str, typer.Option(help="address of the first fake host")] = "127.0.0.11",
        api_port: Annotated[
            int | None, typer.Option(help="port for the controller's API (default: a free one)")
        ] = None,
    ) -> None:
        """Start fake observers and their agents; write inventory.toml, controller.toml, admin.password."""
        from obstop.fakes import hosts as fakehosts

        try:
            fleet = fakehosts.up(
                dir,
                zones=zones,
                servers_per_zone=servers_per_zone,
                broker=broker,
                agents=not no_agents,
                first_ip=first_ip,
                api_port=api_port,
            )
        except (RuntimeError, OSError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(1)
        for h in fleet.hosts:
            agent = f"agent pid {h.agent_pid}" if h.agent_pid else "no agent"
            typer.echo(f"{h.host}  {h.zone}  {h.ip}:2881/2882  observer pid {h.observer_pid}  {agent}")
        d = Path(fleet.dir)
        typer.echo(f"\ncontroller: obstop controller --config {d / 'controller.toml'}")
        typer.echo(f"stop:       obstop stop 1 --watch --config {d / 'controller.toml'}")
        typer.echo(f"clean up:   obstop fakehosts down --dir {d}")

    @fh.command("down")
    def down(dir: Annotated[Path, typer.Option("--dir", help="the fleet's directory")]) -> None:
        """Stop every fake observer and agent started by `up`; leave no process behind."""
        from obstop.fakes import hosts as fakehosts

        for line in fakehosts.down(dir):
            typer.echo(line)
