"""`obstop demo`."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        zones: Annotated[int, typer.Option(min=1, max=32, help="zones")] = 3,
        servers_per_zone: Annotated[int, typer.Option(min=1, max=32, help="servers per zone")] = 1,
        keep: Annotated[bool, typer.Option("--keep", help="keep the temp dir (logs, store)")] = False,
        zone_stop: Annotated[
            bool,
            typer.Option(
                "--zone-stop",
                help="a partial stop instead: one zone down while the cluster serves, a second refused "
                "by the majority check, the first started again",
            ),
        ] = False,
        first_ip: Annotated[
            str | None,
            typer.Option(
                "--first-ip", help="the first fake host's address (default: the first free 127.0.0.x)"
            ),
        ] = None,
    ) -> None:
        """Zero setup: broker, controller, fake hosts with agents; stop the cluster, then start it, live."""
        from rich.console import Console

        from obstop.demo import run_demo
        from obstop.logs import setup

        if zone_stop and zones < 3:
            typer.echo(
                "error: --zone-stop needs --zones 3 or more (one zone down must leave a majority of every "
                "log stream)",
                err=True,
            )
            sys.exit(2)
        if first_ip is not None and not _loopback(first_ip):
            typer.echo(f"error: --first-ip {first_ip!r}: not an IPv4 loopback address (127.x.y.z)", err=True)
            sys.exit(2)
        setup("WARNING")
        demo = run_demo(zones, servers_per_zone, keep, Console(), zone_stop=zone_stop, first_ip=first_ip)
        sys.exit(asyncio.run(demo))


def _loopback(ip: str) -> bool:
    import ipaddress

    try:
        return ipaddress.IPv4Address(ip).is_loopback
    except ValueError:
        return False
