"""One execution of one subtask, as a step sees it: its facts, its typed options, and a narrow sink.

Steps never touch the store or the engine: what they need from them goes through `StepSink` (which the
engine implements), and what they change (status moves, a result, a command's result) is recorded on the
run and committed by the engine with the subtask's finish, in one transaction.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from obstop.controller.errors import NotFound

DEFAULT_FREEZE_TIMEOUT = 600  # seconds a minor freeze may take before the stop fails (OCP's order of size)


@dataclass(frozen=True)
class TaskOptions:
    """What a stop was asked to do, typed; kept in the task context's string map as OCP shows it."""

    freeze: bool = True
    freeze_timeout_seconds: int = DEFAULT_FREEZE_TIMEOUT
    force: bool = False

    def strings(self) -> dict[str, str]:
        return {
            "freeze": str(self.freeze).lower(),
            "freeze_timeout_seconds": str(self.freeze_timeout_seconds),
            "force": str(self.force).lower(),
        }

    @classmethod
    def of(cls, context: Mapping[str, Any]) -> TaskOptions:
        strings = context.get("stringMap", {})
        return cls(
            freeze=strings.get("freeze", "true") == "true",
            freeze_timeout_seconds=int(strings.get("freeze_timeout_seconds", DEFAULT_FREEZE_TIMEOUT)),
            force=strings.get("force", "false") == "true",
        )


@dataclass(frozen=True)
class ServerFacts:
    """Where an observer lives; fixed while a task runs (its status lives in the store)."""

    id: int
    zone: str
    host: str
    ip: str
    sql_port: int
    rpc_port: int
    home_path: str

    @property
    def key(self) -> str:
        return f"{self.ip}:{self.rpc_port}"


class StepSink(Protocol):
    """What a step may ask of the engine while it runs."""

    def log(self, subtask_id: int, line: str) -> None:
        """Append a line to the subtask's log (flushed in the background)."""

    async def command_begin(
        self, command_id: str, subtask_id: int, agent_id: str, kind: str
    ) -> dict[str, Any] | None:
        """Record a command before it is sent; its recorded result if the id is known."""

    async def node_result(self, task_id: int, node: str) -> dict[str, Any] | None:
        """What another subtask of the task recorded as its result."""

    async def stage_results(self, task_id: int, stage: str) -> dict[str, dict[str, Any] | None]:
        """What every subtask of a stage (node keys `stage:i`) recorded, read once per task while it runs:
        for a stage that has ended (a later stage reads it, after the Wait node that joins it)."""

    async def server_statuses(self, cluster_id: int) -> dict[int, str]:
        """The servers' current statuses."""


@dataclass
class StepRun:
    subtask_id: int
    task_id: int
    node: str
    step: str
    run_time: int
    operation: str
    context: dict[str, Any]
    cluster_id: int
    task_context: dict[str, Any]
    deadline: float  # time.monotonic() by which a remote call must have answered
    command_prefix: str  # unique to this store: a command id is never reused across stores
    command_secret: bytes  # the store's secret: keys the unguessable part of command ids
    servers: Mapping[int, ServerFacts]
    zones: Mapping[str, int]
    sink: StepSink
    previous: dict[str, Any] | None = None  # what earlier runs of this subtask recorded (a rollback reads it)
    # committed with the subtask's finish, in the same transaction
    result: dict[str, Any] | None = None
    moves: list[tuple[str, int, str]] = field(default_factory=list)  # (cluster | zone | server, id, status)
    command_result: tuple[str, dict[str, Any]] | None = None

    @property
    def options(self) -> TaskOptions:
        return TaskOptions.of(self.task_context)

    def server(self, server_id: int) -> ServerFacts:
        try:
            return self.servers[server_id]
        except KeyError:
            raise NotFound(f"no server {server_id} in cluster {self.cluster_id}") from None

    def zone_id(self, name: str) -> int:
        try:
            return self.zones[name]
        except KeyError:
            raise NotFound(f"cluster {self.cluster_id} has no zone {name}") from None

    def ctx(self, key: str) -> Any:
        return self.context.get(key)

    def task_string(self, key: str) -> str | None:
        value = self.task_context.get("stringMap", {}).get(key)
        return None if value is None else str(value)

    def record(self, **found: Any) -> None:
        """Add to what this subtask records (kept across its runs: a rollback reads the forward run's)."""
        self.result = {**(self.previous or {}), **(self.result or {}), **found}

    def move(self, entity: str, ident: int, status: str) -> None:
        self.moves.append((entity, ident, status))

    async def log(self, line: str) -> None:
        stamp = datetime.now(UTC).astimezone().isoformat(timespec="milliseconds")
        self.sink.log(self.subtask_id, f"{stamp} {line}")

    @property
    def command_id(self) -> str:
        # stable across controller restarts within one run; a retry (a new run) gets a new id. The MAC
        # keeps ids unguessable (an agent cannot compute another's from its own), results are bound by
        # signatures and digests anyway
        run = f"t{self.task_id}-s{self.subtask_id}-r{self.run_time}"
        mac = hmac.new(self.command_secret, run.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.command_prefix}-{run}-{mac}"
