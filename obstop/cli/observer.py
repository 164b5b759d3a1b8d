"""`obstop observer probe|stop`: the agent's own procedure, by hand, locally or over SSH."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from obstop.agent import procedure
from obstop.agent.errors import AgentError
from obstop.agent.executors.host import Host
from obstop.agent.executors.local import LocalHost
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.protocol import ObserverState, ObserverTarget, ProbeReport, StopOptions, StopReport

app = typer.Typer(help="Probe or stop one observer, locally or over SSH.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="observer")


HomePath = Annotated[str, typer.Option("--home-path", help="the observer's home path (absolute)")]
SqlPort = Annotated[int, typer.Option("--sql-port", help="SQL port (-p of observer)")]
RpcPort = Annotated[int, typer.Option("--rpc-port", help="RPC port (-P of observer)")]
Ip = Annotated[str, typer.Option("--ip", help="address the observer listens on (0.0.0.0: any)")]
Ssh = Annotated[str | None, typer.Option("--ssh", help="USER@HOST[:PORT] to reach the host over SSH")]
Identity = Annotated[Path | None, typer.Option("--identity", help="SSH private key")]
KnownHosts = Annotated[Path | None, typer.Option("--known-hosts", help="known_hosts file for --ssh")]
Json = Annotated[bool, typer.Option("--json", help="print the result model as JSON")]

_SSH = re.compile(r"^(?P<user>[^@]+)@(?P<host>\[[^\]]+\]|[^:]+)(:(?P<port>\d+))?$")


def _host(ssh: str | None, identity: Path | None, known_hosts: Path | None) -> Host:
    if ssh is None:
        return LocalHost()
    m = _SSH.match(ssh)
    if not m:
        raise typer.BadParameter("expected USER@HOST[:PORT]", param_hint="--ssh")
    if identity is None:
        raise typer.BadParameter("--ssh needs --identity KEY", param_hint="--identity")
    known = known_hosts or Path.home() / ".ssh" / "known_hosts"
    address = m["host"].strip("[]")
    config = SSHHostConfig(
        host=address,
        address=address,
        user=m["user"],
        identity=identity,
        known_hosts=known,
        port=int(m["port"] or 22),
    )
    return config.open()


def _reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"


def _target(host: Host, home_path: str, ip: str, sql_port: int, rpc_port: int) -> ObserverTarget:
    try:
        return ObserverTarget(
            host=host.name, ip=ip, home_path=home_path, sql_port=sql_port, rpc_port=rpc_port
        )
    except ValidationError as exc:
        raise typer.BadParameter(_reason(exc)) from exc


def describe_probe(r: ProbeReport) -> str:
    if r.state is ObserverState.RUNNING:
        return f"RUNNING pid {r.pid} (user {r.user}), ports held {r.ports_held or 'none'}"
    if r.state is ObserverState.STOPPED:
        return "STOPPED" + (" (stale pid file)" if r.stale_pid_file else "")
    return f"REFUSED: {r.reason}"


def describe_stop(r: StopReport) -> str:
    if not r.ok:
        return f"FAILED: {r.reason}"
    if r.already_stopped:
        return "already stopped" + ("; stale pid file removed" if r.pid_file_removed else "")
    exit_ms = (r.time_to_exit_s or 0) * 1000
    free_ms = (r.time_to_ports_free_s or 0) * 1000
    removed = "; pid file removed" if r.pid_file_removed else ""
    return (
        f"stopped pid {r.pid} with {' then '.join(r.signals) or 'no signal'} in {exit_ms:.0f} ms; "
        f"ports free after {free_ms:.0f} ms{removed}"
    )


def _run(work: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(work)
    except AgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(3)


@app.command("probe")
def probe_cmd(
    home_path: HomePath,
    sql_port: SqlPort = 2881,
    rpc_port: RpcPort = 2882,
    ip: Ip = "0.0.0.0",
    ssh: Ssh = None,
    identity: Identity = None,
    known_hosts: KnownHosts = None,
    json: Json = False,
) -> None:
    """Find the observer of HOME_PATH and prove its identity. Exit 0 unless refused."""
    host = _host(ssh, identity, known_hosts)
    target = _target(host, home_path, ip, sql_port, rpc_port)

    async def go() -> None:
        try:
            report = await procedure.probe(host, target)
        finally:
            await host.close()
        typer.echo(report.model_dump_json(indent=2) if json else describe_probe(report))
        if report.state is ObserverState.REFUSED:
            sys.exit(1)

    _run(go())


@app.command("stop")
def stop_cmd(
    home_path: HomePath,
    sql_port: SqlPort = 2881,
    rpc_port: RpcPort = 2882,
    ip: Ip = "0.0.0.0",
    ssh: Ssh = None,
    identity: Identity = None,
    known_hosts: KnownHosts = None,
    json: Json = False,
    signal: Annotated[str, typer.Option(help="first signal")] = "SIGTERM",
    term_timeout: Annotated[float, typer.Option(help="seconds to wait after it")] = 10.0,
    kill_timeout: Annotated[float, typer.Option(help="seconds to wait after SIGKILL")] = 10.0,
    port_timeout: Annotated[float, typer.Option(help="seconds to wait for free ports")] = 30.0,
) -> None:
    """Stop the observer of HOME_PATH, only once its identity is proved. Exit 0 when stopped."""
    host = _host(ssh, identity, known_hosts)
    target = _target(host, home_path, ip, sql_port, rpc_port)
    try:
        options = StopOptions(
            signal=signal, term_timeout=term_timeout, kill_timeout=kill_timeout, port_timeout=port_timeout
        )
    except ValidationError as exc:
        raise typer.BadParameter(_reason(exc)) from exc

    async def go() -> None:
        try:
            report = await procedure.stop(host, target, options)
        finally:
            await host.close()
        typer.echo(report.model_dump_json(indent=2) if json else describe_stop(report))
        if not report.ok:
            sys.exit(1)

    _run(go())
