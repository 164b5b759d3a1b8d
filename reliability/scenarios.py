"""R1-R6: one fault each, at a random moment of a stop (uniform over the stop's span, measured by an
undisturbed stop first), and what must follow. Each drive returns the trial's outcome; the invariants
are checked by the runner afterwards."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability import netns, stores
from reliability.procs import alive, until
from reliability.trial import Outcome, Trial
from reliability.world import Spec, World

FAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), Path("/nonexistent"))
DONE = 120.0  # bound of a task's end after a fault (every subtask timeout is far shorter)


def _short(subtask_timeout: float) -> dict[str, dict[str, Any]]:
    return {"stop": {"subtask_timeout": subtask_timeout}}


@contextmanager
def plain(root: Path, variant: str, config: dict[str, dict[str, Any]] | None = None) -> Iterator[World]:
    """Three fake hosts on loopback; SQLite, or a database of its own on the shared PostgreSQL."""
    with stores.database() if variant == "postgres" else _nothing() as url:
        world = World(root, Spec(store_url=url, config=config or {}))
        try:
            yield world.up()
        finally:
            world.down()


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def ended(
    trial: Trial, task_id: int, clear: Callable[[str], bool], before_retry: Callable[[], None]
) -> Outcome:
    """The task's end after a fault: completed; or failed clearly, then (once the fault is gone) retried
    through; anything else is unexpected."""
    status = trial.finish(task_id, DONE)
    if status == "SUCCESSFUL":
        before_retry()
        return Outcome("completed")
    if status != "FAILED":
        return Outcome("unexpected", f"task {task_id} still {status} after {DONE:g}s")
    logs = trial.world.ctl.failed_logs(task_id)
    if not clear(logs):
        return Outcome("unexpected", f"failed without saying why: {logs[-400:]}")
    trial.notes.append(logs.strip().splitlines()[-1][:300] if logs.strip() else "")
    before_retry()
    return trial.retry_through(task_id, DONE)


def _agent_back(trial: Trial, host: str) -> None:
    until(lambda: host in trial.world.ctl.agents_up(), f"agent {host} not back online", 30)


# --- R1 the controller SIGKILLed mid-stop, restarted: the task completes --------------------------------


def r1(trial: Trial, variant: str, rng: random.Random, span: float) -> Outcome:
    task_id = trial.stop()
    trial.fault_at = rng.uniform(0, span)
    trial.sleep(trial.fault_at, task_id)
    trial.world.ctl.kill()
    trial.world.ctl.start()
    status = trial.finish(task_id, DONE)
    if status == "SUCCESSFUL":
        return Outcome("completed")
    return Outcome("unexpected", f"ended {status}: {trial.world.ctl.failed_logs(task_id)[-400:]}")


# --- R2 an agent SIGKILLed mid-stop: fails naming it, or completes; after its restart a retry completes --


def r2(trial: Trial, variant: str, rng: random.Random, span: float) -> Outcome:
    task_id = trial.stop()
    victim = rng.choice(trial.world.hosts)
    trial.fault_at = rng.uniform(0, span)
    trial.sleep(trial.fault_at, task_id)
    assert victim.agent is not None
    victim.agent.kill()
    victim.agent.wait(10)
    trial.notes.append(f"agent {victim.name} killed")

    def restart() -> None:
        trial.world.start_agent(victim)
        _agent_back(trial, victim.name)

    return ended(trial, task_id, lambda logs: f"agent {victim.name}" in logs, restart)


# --- R3 the broker killed and restarted mid-stop: completes, or fails clearly and a retry completes ------


@contextmanager
def broker_world(root: Path, variant: str) -> Iterator[World]:
    world = World(root, Spec(config=_short(10.0), nats=variant == "nats-node"))
    try:
        yield world.up()
    finally:
        world.down()


def r3(trial: Trial, variant: str, rng: random.Random, span: float) -> Outcome:
    task_id = trial.stop()
    trial.fault_at = rng.uniform(0, span)
    trial.sleep(trial.fault_at, task_id)
    down = rng.uniform(0.2, 3.0)
    nats = trial.world.nats
    if nats is None:
        trial.world.broker.kill()
        trial.sleep(down, task_id)
        trial.world.broker.start()
        trial.notes.append(f"broker down {down:.1f}s")
    else:  # one node of the cluster: the clients on it move to the next node of their lists
        node = rng.randrange(len(nats.mqtt_ports))
        nats.kill(node)
        trial.sleep(down, task_id)
        nats.start_node(node)
        trial.notes.append(f"NATS node n{node + 1} down {down:.1f}s")

    def agents_back() -> None:
        for h in trial.world.hosts:
            _agent_back(trial, h.name)

    return ended(trial, task_id, lambda logs: "agent h" in logs, agents_back)


# --- R4 a host cut off the network mid-stop: a clear failure within the subtask timeout; a retry after ---

R4_SUBTASK_TIMEOUT = 6.0
# the freeze's SQL reaches the cut host too (its checkpoint wait asks that server): bounded as short
R4_SQL = {"connect_timeout": 2.0, "statement_timeout": 6.0}


@contextmanager
def isolated(root: Path, variant: str) -> Iterator[World]:
    world = World(root, Spec(broker_bind="0.0.0.0", config=_short(R4_SUBTASK_TIMEOUT), sql=R4_SQL))
    spaces: list[netns.Netns] = []
    try:
        net = random.randrange(0, 250)
        spaces += [netns.Netns.create(net, i) for i in range(world.spec.hosts)]
        for h, ns in zip(world.plan_hosts([ns.inside for ns in spaces]), spaces, strict=True):
            h.wrap, h.broker_host = ns.wrap, ns.outside
        world.isolation = {h.name: ns for h, ns in zip(world.hosts, spaces, strict=True)}
        yield world.up()
    finally:
        world.down()
        for ns in spaces:
            ns.delete()


def r4(trial: Trial, variant: str, rng: random.Random, span: float) -> Outcome:
    task_id = trial.stop()
    victim = rng.choice(trial.world.hosts)
    ns = trial.world.isolation[victim.name]
    trial.fault_at = rng.uniform(0, span)
    trial.sleep(trial.fault_at, task_id)
    ns.cut()
    cut_at = time.monotonic()
    trial.notes.append(f"{victim.name} cut off")

    def clear(logs: str) -> bool:
        took = time.monotonic() - cut_at
        bound = max(R4_SUBTASK_TIMEOUT, R4_SQL["statement_timeout"])
        trial.notes.append(
            f"FAILED {took:.1f}s after the cut (subtask and SQL statement timeouts {bound:g}s)"
        )
        if took > bound * 2 + 10:  # the step cut off, and at most one bookkeeping step after
            return False
        return victim.name in logs or victim.ip in logs

    def reconnect() -> None:
        ns.restore()
        _agent_back(trial, victim.name)

    return ended(trial, task_id, clear, reconnect)


# --- R5 the store refusing writes: waits or fails clearly, never loses a finished state -----------------


@contextmanager
def own_store(root: Path, variant: str) -> Iterator[World]:
    if variant.startswith("sqlite"):
        with plain(root, "sqlite") as world:
            yield world
        return
    with stores.own_postgres() as pg:
        world = World(root, Spec(store_url=pg.url))
        world.postgres = pg
        try:
            yield world.up()
        finally:
            world.down()


def r5(trial: Trial, variant: str, rng: random.Random, span: float) -> Outcome:
    task_id = trial.stop()
    trial.fault_at = rng.uniform(0, span)
    trial.sleep(trial.fault_at, task_id)
    hold = rng.uniform(1.0, 6.0)
    if variant.startswith("sqlite"):
        locker = stores.hold_sqlite_lock(trial.world.root / "state" / "controller.db", hold)
        trial.sleep(hold, task_id)
        locker.wait(30)
        trial.notes.append(f"SQLite locked {hold:.1f}s")
    else:
        pg = trial.world.postgres
        assert pg is not None
        pg.stop("fast")
        trial.sleep(hold, task_id)
        pg.start()
        trial.notes.append(f"PostgreSQL down {hold:.1f}s")
    return ended(trial, task_id, lambda logs: bool(logs.strip()), lambda: None)


# --- R6 an agent's clock 10 minutes off: its commands rejected with the reason, never acted on late ----


@contextmanager
def skewed(root: Path, variant: str) -> Iterator[World]:
    world = World(root, Spec())
    victim = world.plan_hosts()[random.randrange(3)]
    victim.agent_env = {"LD_PRELOAD": str(FAKETIME), "FAKETIME": variant, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    try:
        yield world.up()
    finally:
        world.down()


def r6(trial: Trial, variant: str, rng: random.Random, span: float) -> Outcome:
    victim = next(h for h in trial.world.hosts if h.agent_env)
    task_id = trial.stop()
    trial.fault_at = 0.0
    status = trial.finish(task_id, DONE)
    if status != "FAILED":
        return Outcome("unexpected", f"a stop through an agent {variant} off ended {status}")
    logs = trial.world.ctl.failed_logs(task_id)
    if f"agent {victim.name} rejected" not in logs or "clock" not in logs:
        return Outcome("unexpected", f"failed without naming the clock skew: {logs[-400:]}")
    if not alive(victim.observer_pid) or "received SIGTERM" in victim.observer_log.read_text():
        return Outcome("unexpected", f"{victim.name}'s observer was acted on by a rejected command")
    trial.notes.append(logs.strip().splitlines()[-1][:300])
    assert victim.agent is not None
    victim.agent.kill()  # its clock set right, as an operator would
    victim.agent.wait(10)
    victim.agent_env = {}
    trial.world.start_agent(victim)
    _agent_back(trial, victim.name)
    return trial.retry_through(task_id, DONE)


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    variants: tuple[str, ...]
    world: Callable[[Path, str], AbstractContextManager[World]]
    drive: Callable[[Trial, str, random.Random, float], Outcome]
    unavailable: Callable[[], str | None] = field(default=lambda: None)
    timed: bool = True  # the fault comes at a random moment of the stop (its span is measured first)


def _faketime() -> str | None:
    return None if FAKETIME.exists() else "libfaketime is not installed (apt-get install faketime)"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("R1", "controller SIGKILL mid-stop, restarted", ("sqlite", "postgres"), plain, r1),
        Scenario(
            "R2",
            "agent SIGKILL mid-stop, restarted, retry",
            ("sqlite",),
            lambda root, v: plain(root, v, _short(6.0)),
            r2,
        ),
        Scenario(
            "R3", "broker (node) SIGKILL mid-stop, restarted", ("mosquitto", "nats-node"), broker_world, r3
        ),
        Scenario("R4", "host cut off the network mid-stop", ("netns",), isolated, r4, netns.unavailable),
        Scenario(
            "R5", "store refusing writes mid-stop", ("sqlite-locked", "postgres-restarted"), own_store, r5
        ),
        Scenario("R6", "agent clock 10 minutes off", ("+10m", "-10m"), skewed, r6, _faketime, timed=False),
    )
}
