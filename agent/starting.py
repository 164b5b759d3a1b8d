"""The start procedure, written once for every executor (and the rollback of a stop uses it too).

start: probe -> (stopped) journal the launch, then `cd HOME && ./bin/observer` with no arguments, as the
home's owner, the way observer restarts itself from the configuration it persisted in etc/ -> wait
(bounded) until the observer of HOME is proved by its pid file, runs, listens on its SQL and RPC ports
and answers on its SQL port with the MySQL greeting -> report. An observer already running is not
launched again; a launch journalled by an earlier attempt of the same command is waited for, never
repeated.
"""

from __future__ import annotations

import asyncio
import time

from obstop.agent.cancel import Cancelled, CancelToken, acting, to_the_end
from obstop.agent.errors import LaunchRefused
from obstop.agent.executors.host import Host
from obstop.agent.procedure import CommandJournal, Progress, _probe, _quiet
from obstop.agent.protocol import ObserverState, ObserverTarget, ProbeReport, StartOptions, StartReport

LAUNCH_MARK = "LAUNCH"
MYSQL_PROTOCOL_V10 = 0x0A


async def answers_sql(ip: str, port: int, timeout: float = 2.0) -> str | None:
    """None once the port answers with a MySQL handshake (protocol 10); else what it did instead."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(ip, port)
            try:
                head = await reader.readexactly(5)  # 3 bytes length, 1 sequence, then the payload
            finally:
                writer.close()
    except TimeoutError:
        return f"no greeting from {ip}:{port} within {timeout:g}s"
    except (OSError, asyncio.IncompleteReadError) as exc:
        return f"{ip}:{port}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else 'closed'}"
    if head[4] != MYSQL_PROTOCOL_V10:
        return f"{ip}:{port} answered {head[4]:#04x}, not a MySQL handshake"
    return None


def _listening(report: ProbeReport, target: ObserverTarget) -> bool:
    return set(target.ports) <= set(report.ports_held)


async def start(
    host: Host,
    target: ObserverTarget,
    options: StartOptions | None = None,
    progress: Progress = _quiet,
    journal: CommandJournal | None = None,
    cancel: CancelToken | None = None,
) -> StartReport:
    opts = options or StartOptions()
    started = time.monotonic()
    first = (await _probe(host, target)).report

    def result(ok: bool, probe: ProbeReport, **kw: object) -> StartReport:
        return StartReport(host=host.name, home_path=target.home_path, ok=ok, probe=probe, **kw)

    if first.state is ObserverState.REFUSED:
        return result(False, first, reason=f"refused: {first.reason}")
    launched, user = False, first.user
    if first.state is ObserverState.STOPPED:
        try:
            async with acting(cancel):
                # commit before act: a start resumed after a crash waits for this launch, never a second
                if journal is not None and await journal.record(LAUNCH_MARK):
                    await progress("bin/observer was already launched by an earlier attempt; waiting for it")
                    launched = True
                else:
                    await progress(f"launching: cd {target.home_path} && ./bin/observer")
                    launch = await to_the_end(host.launch(target.home_path, opts.launch_timeout))
                    launched, user = True, launch.user
                    said = f": {launch.output.strip()[-300:]}" if launch.output.strip() else ""
                    if launch.exit_status not in (0, None):
                        reason = f"{target.binary} exited with status {launch.exit_status} as {user}{said}"
                        return result(False, first, launched=True, user=user, reason=reason)
                    await progress(
                        f"bin/observer returned as {user} (status {launch.exit_status})"
                        if launch.exit_status is not None
                        else f"bin/observer still in the foreground after {opts.launch_timeout:g}s"
                    )
        except Cancelled:
            return result(False, first, reason="cancelled before the launch")
        except LaunchRefused as exc:
            return result(False, first, reason=str(exc))
    elif journal is not None and LAUNCH_MARK in await journal.marks():
        launched = True  # by this very command, before a restart: it is still coming up
        await progress(f"pid {first.pid} was launched by an earlier attempt of this command; waiting for it")
    else:
        await progress(f"observer already running as pid {first.pid}; not launching another")
    deadline = started + opts.ready_timeout
    found, why = await _wait_ready(host, target, deadline, launched, progress)
    if why is not None:
        tail = await host.read_tail(f"{target.home_path}/log/observer.log", 600)
        last = " | ".join(line.strip() for line in tail.strip().splitlines()[-3:] if line.strip())
        return result(
            False,
            found,
            launched=launched,
            user=user,
            pid=found.pid,
            reason=why + (f"; last lines of log/observer.log: {last}" if last else ""),
        )
    ready_s = time.monotonic() - started
    await progress(f"observer pid {found.pid} listens on {target.ip}:{target.sql_port}/{target.rpc_port}")
    return result(
        True,
        found,
        already_running=not launched and first.state is ObserverState.RUNNING,
        launched=launched,
        user=found.user or user,
        pid=found.pid,
        time_to_ready_s=ready_s,
    )


async def _wait_ready(
    host: Host, target: ObserverTarget, deadline: float, launched: bool, progress: Progress
) -> tuple[ProbeReport, str | None]:
    """Until the observer is proved, listens and answers SQL (report, None), or the deadline (report, why)."""
    delay = 0.02
    stopped_since: float | None = None
    while True:
        report = (await _probe(host, target)).report
        now = time.monotonic()
        why: str
        if report.state is ObserverState.RUNNING and _listening(report, target):
            sql = await answers_sql(target.ip, target.sql_port, min(2.0, max(0.1, deadline - now)))
            if sql is None:
                return report, None
            why = f"pid {report.pid} runs but its SQL port does not answer: {sql}"
        elif report.state is ObserverState.RUNNING:
            free = sorted(set(target.ports) - set(report.ports_held))
            why = f"pid {report.pid} runs but does not listen on {target.ip} port(s) {free}"
        elif report.state is ObserverState.REFUSED:
            why = f"refused: {report.reason}"
        else:
            stopped_since = stopped_since or now
            why = f"no observer runs in {target.home_path} (no live process in run/observer.pid)"
            # a launcher that returned leaves a pid file at once; none for long means it died
            if launched and now - stopped_since > 5.0:
                return report, why + " after the launch"
        if now >= deadline:
            return report, why + " at the deadline"
        await asyncio.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 1.5, 0.25)
