"""The probe and stop procedures, written once for every executor.

stop: prove identity -> signal -> wait for exit (bounded) -> prove identity again -> SIGKILL if it
still lives -> wait (bounded) -> wait for free SQL and RPC ports (bounded) -> remove the stale pid
file -> report. Waits follow the process (pidfd or /proc polling), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from obstop.agent.cancel import Cancelled, CancelToken, acting, to_the_end
from obstop.agent.executors.host import (
    Changed,
    Host,
    Moved,
    OneTrip,
    PidFile,
    ProcessFacts,
    Resolved,
    Settled,
    SignalTrip,
    parse_pid,
)
from obstop.agent.executors.procfs import WILDCARDS
from obstop.agent.identity import prove
from obstop.agent.protocol import ObserverState, ObserverTarget, ProbeReport, StopOptions, StopReport

Progress = Callable[[str], Awaitable[None]]
EXIT_GRACE = 1.0  # seconds an unprovable process gets to finish exiting before escalation is refused


class SignalJournal(Protocol):
    """Where a stop records each signal before sending it, so a resumed stop never repeats one."""

    async def record(self, mark: str) -> bool:
        """Record mark; True if it was already recorded (the signal was sent by an earlier attempt)."""
        ...


class CommandJournal(SignalJournal, Protocol):
    """A command's marks, read back too (a launch, a cancel)."""

    async def marks(self) -> list[str]: ...


async def _quiet(_: str) -> None:
    return None


class _Probe:
    """A probe's report plus what the stop needs to act on it."""

    def __init__(
        self,
        report: ProbeReport,
        resolved: Resolved,
        pid_file: PidFile,
        facts: ProcessFacts | None = None,
    ) -> None:
        self.report = report
        self.resolved = resolved
        self.pid_file = pid_file
        self.facts = facts


async def _probe(host: Host, target: ObserverTarget) -> _Probe:
    found = await host.facts(target.home_path, target.pid_file, target.ip, target.ports)
    resolved, pid_file = found.resolved, found.pid_file
    held = sorted({x.port for x in found.listeners})

    def report(state: ObserverState, **kw: object) -> ProbeReport:
        return ProbeReport(
            host=host.name,
            home_path=target.home_path,
            state=state,
            ports_held=held,
            **kw,
        )

    def refused(reason: str) -> _Probe:
        return _Probe(report(ObserverState.REFUSED, reason=reason), resolved, pid_file)

    if not resolved.home_exists:
        return refused(f"home path {target.home_path} does not exist on {host.name}")
    if not resolved.binary_exists:
        return refused(f"{target.binary} does not exist: {target.home_path} is not an observer's home path")
    if pid_file.error:
        return refused(f"cannot read {pid_file.path}: {pid_file.error}")
    if pid_file.is_symlink:
        return refused(f"{pid_file.path} is a symbolic link; refusing to trust it")
    if not pid_file.exists:
        if held:
            return refused(f"no pid file at {pid_file.path}, but port(s) {held} are held on {target.ip}")
        return _Probe(report(ObserverState.STOPPED), resolved, pid_file)
    pid = parse_pid(pid_file.content or "")
    if pid is None:
        return refused(f"{pid_file.path} does not hold a valid pid: {(pid_file.content or '')[:40]!r}")
    facts = found.process
    if facts is None or facts.zombie:
        if held:
            return refused(f"{pid_file.path} names pid {pid}, which is gone, but port(s) {held} are held")
        return _Probe(report(ObserverState.STOPPED, stale_pid_file=True), resolved, pid_file)
    reason = prove(facts, target, resolved, pid_file)
    if reason:
        return refused(reason)
    running = report(ObserverState.RUNNING, pid=pid, start_time=facts.start_time, user=facts.user)
    return _Probe(running, resolved, pid_file, facts)


async def probe(host: Host, target: ObserverTarget) -> ProbeReport:
    return (await _probe(host, target)).report


Examined = _Probe


async def examine(host: Host, target: ObserverTarget) -> Examined:
    """A probe, with what a stop needs to act on it without proving again: `stop(proven=...)`."""
    return await _probe(host, target)


def watched_addresses(target: ObserverTarget, facts: ProcessFacts | None) -> list[str]:
    """Where the ports must be free after a stop: the target's address; or, when the target names any
    address (0.0.0.0: `observer stop` without --ip), the addresses the proven observer itself listened on,
    so another process on the same port elsewhere does not fail a stop that succeeded."""
    if target.ip not in WILDCARDS or facts is None:
        return [target.ip]
    own = sorted({ip for ip, port in facts.listeners if port in target.ports})
    return own or [target.ip]


async def _wait_ports_free(
    host: Host, target: ObserverTarget, timeout: float, addresses: list[str], *, waited: float = 0.0
) -> str | None:
    """None once no socket listens on the ports at addresses; else what still holds them at the deadline.
    waited: seconds already waited elsewhere (a host's settle), counted against timeout."""
    deadline = time.monotonic() + timeout - waited
    delay = 0.002
    while True:
        found = [x for ip in addresses for x in await host.listeners(ip, target.ports)]
        held = list({(x.ip, x.port, x.inode): x for x in found}.values())
        if not held:
            return None
        if time.monotonic() >= deadline:
            owners = await host.socket_owners({x.inode for x in held})
            parts = []
            for x in sorted(held, key=lambda x: x.port):
                who = f"pid {owners[x.inode]}" if x.inode in owners else "an unknown process"
                parts.append(f"port {x.port} still held by {who}")
            return "; ".join(parts) + f" after {timeout:g}s"
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def stop(
    host: Host,
    target: ObserverTarget,
    options: StopOptions | None = None,
    progress: Progress = _quiet,
    journal: SignalJournal | None = None,
    cancel: CancelToken | None = None,
    proven: Examined | None = None,
) -> StopReport:
    """cancel: once it is set, no signal is sent (one in progress is finished first) and the stop ends.
    proven: this target's examine() of a moment before, on a SignalTrip host (which checks, on the host
    and with the signal, that the process is still the one proved): the stop does not prove again."""
    opts = options or StopOptions()
    started = time.monotonic()
    if proven is None or not isinstance(host, SignalTrip) or proven.report.home_path != target.home_path:
        proven = None  # only a host that checks the proof with the signal may skip proving again
    found = proven or await _probe(host, target)
    rep = found.report
    signals: list[str] = []

    def result(ok: bool, **kw: object) -> StopReport:
        return StopReport(
            host=host.name,
            home_path=target.home_path,
            ok=ok,
            probe=rep,
            signals=signals,
            **kw,
        )

    if rep.state is ObserverState.REFUSED:
        return result(False, reason=f"refused: {rep.reason}")
    try:
        try:
            return await _stop_running(
                host, target, opts, progress, journal, cancel, found, signals, result, started
            )
        except Moved:  # gone, and its pid file names another now (nothing sent): prove that one, once
            found = await _probe(host, target)
            rep = found.report
            if rep.state is ObserverState.REFUSED:
                return result(False, reason=f"refused: {rep.reason}")
            return await _stop_running(
                host, target, opts, progress, journal, cancel, found, signals, result, started
            )
    except Moved as exc:
        return result(False, pid=rep.pid, reason=f"refused: pid {rep.pid} {exc} again; nothing was signalled")
    except Changed as exc:
        return result(False, pid=rep.pid, reason=f"refused: pid {rep.pid} {exc}; nothing was signalled")
    except Cancelled:
        sent = f"after {' then '.join(signals)} to pid {rep.pid}" if signals else "before any signal"
        await progress(f"cancelled {sent}; not signalling again")
        return result(False, pid=rep.pid, reason=f"cancelled {sent}")


async def _stop_running(
    host: Host,
    target: ObserverTarget,
    opts: StopOptions,
    progress: Progress,
    journal: SignalJournal | None,
    cancel: CancelToken | None,
    found: _Probe,
    signals: list[str],
    result: Callable[..., StopReport],
    started: float,
) -> StopReport:
    rep = found.report
    pid = rep.pid
    time_to_exit: float | None = None
    settled: Settled | None = None  # a OneTrip host's wait after the signal
    settle_began = started
    if rep.state is ObserverState.RUNNING:
        assert found.facts is not None and pid is not None
        start_time = found.facts.start_time
        first = signal.Signals[opts.signal]

        async def send(sig: signal.Signals) -> None:
            async with acting(cancel):  # a cancel journalled first means no signal, ever
                # commit before act: a stop resumed after a crash finds the mark and does not signal again
                if journal is not None and await journal.record(f"{sig.name}:{pid}:{start_time}"):
                    await progress(f"{sig.name} was already sent to pid {pid} by an earlier attempt; waiting")
                    signals.append(sig.name)
                    return
                await progress(f"sending {sig.name} to pid {pid}")
                if await to_the_end(host.send_signal(pid, sig, start_time)):
                    signals.append(sig.name)

        if isinstance(host, SignalTrip):  # the check, the signal, then the exit, ports, pid file: one trip
            settle_began = time.monotonic()
            settled = await _signal_trip(host, target, opts, found, first, signals, journal, progress, cancel)
        if settled is not None:
            exited = settled.exited
        elif isinstance(host, OneTrip):  # exit, ports, pid file: one round trip
            await send(first)
            settle_began = time.monotonic()
            has_file = found.pid_file.exists and found.pid_file.content is not None
            settled = await host.settle(
                pid,
                start_time,
                opts.term_timeout,
                watched_addresses(target, found.facts),
                target.ports,
                opts.port_timeout,
                target.pid_file if has_file else None,
                found.pid_file.content if has_file else None,
            )
            exited = settled.exited
        else:
            await send(first)
            exited = await host.wait_exit(pid, start_time, opts.term_timeout)
        if not exited:
            settled = None  # what follows the escalation waits as any host does
            again = await host.inspect(pid)
            if again is not None and not again.zombie:
                if again.start_time != start_time:
                    exited = True  # the pid was reused: our observer is gone
                else:
                    reason = prove(again, target, found.resolved, found.pid_file)
                    # an observer tearing down loses its exe and cwd links before it is gone: its proof
                    # fails then, so wait a moment (never signal) before refusing to escalate
                    if reason and not await host.wait_exit(pid, start_time, EXIT_GRACE):
                        return result(False, pid=pid, reason=f"not escalating to SIGKILL: {reason}")
                    if reason:
                        exited = True  # gone during the grace: it was exiting
                    else:
                        await progress(f"pid {pid} alive {opts.term_timeout:g}s after {first.name}; SIGKILL")
                        await send(signal.SIGKILL)
                        exited = await host.wait_exit(pid, start_time, opts.kill_timeout)
            else:
                exited = True
        if not exited:
            return result(False, pid=pid, reason=f"pid {pid} alive after {' then '.join(signals)}")
        time_to_exit = time.monotonic() - started
        if settled is not None and settled.exit_s is not None:
            time_to_exit = settle_began - started + settled.exit_s  # the host's own clock
        if settled is None or settled.ports_free_s is None:  # else the report follows at once, saying it
            await progress(f"pid {pid} exited after {time_to_exit * 1000:.0f} ms")

    addresses = watched_addresses(target, found.facts)
    if settled is not None and settled.ports_free_s is not None:  # free, and the pid file handled
        return result(
            True,
            pid=pid,
            already_stopped=False,
            time_to_exit_s=time_to_exit,
            time_to_ports_free_s=settle_began - started + settled.ports_free_s,
            pid_file_removed=settled.removed,
        )
    waited = opts.port_timeout if settled is not None else 0.0  # held at the settle's deadline: one look
    still_held = await _wait_ports_free(host, target, opts.port_timeout, addresses, waited=waited)
    if still_held:
        return result(False, pid=pid, time_to_exit_s=time_to_exit, reason=still_held)
    ports_free = time.monotonic() - started
    removed = False
    if found.pid_file.exists and found.pid_file.content is not None:
        removed = await host.remove_pid_file(target.pid_file, found.pid_file.content)
    return result(
        True,
        pid=pid,
        already_stopped=rep.state is ObserverState.STOPPED,
        time_to_exit_s=time_to_exit,
        time_to_ports_free_s=ports_free,
        pid_file_removed=removed,
    )


async def _signal_trip(
    host: SignalTrip,
    target: ObserverTarget,
    opts: StopOptions,
    found: _Probe,
    sig: signal.Signals,
    signals: list[str],
    journal: SignalJournal | None,
    progress: Progress,
    cancel: CancelToken | None,
) -> Settled | None:
    """The first signal on a SignalTrip host: recorded, then checked, sent and settled in one round trip.
    None when an earlier attempt recorded it (the caller waits for it as on any host). Raises Changed or
    Moved when the host found the process not the one proved (nothing sent)."""
    facts = found.facts
    assert facts is not None
    has_file = found.pid_file.exists and found.pid_file.content is not None
    async with host.signal_trip(
        facts,
        found.resolved,
        opts.term_timeout,
        watched_addresses(target, facts),
        target.ports,
        opts.port_timeout,
        target.pid_file if has_file else None,
        found.pid_file.content if has_file else None,
    ) as trip:
        async with acting(cancel):  # a cancel journalled first means no signal, ever
            # commit before act: a stop resumed after a crash finds the mark and does not signal again
            if journal is not None and await journal.record(f"{sig.name}:{facts.pid}:{facts.start_time}"):
                return None
            await progress(f"sending {sig.name} to pid {facts.pid}")
            if await to_the_end(trip.signal(sig)):
                signals.append(sig.name)
        return await trip.settled()
