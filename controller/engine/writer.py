"""Group commit: the writes of many concurrent subtasks in one transaction.

A stop of thousands of servers finishes thousands of subtasks at once; one transaction each would queue
them behind the store's single writer (SQLite) and make the stop as slow as the sum of its commits. The
writer collects finishes (with the status moves and command results they carry), command records and
log lines, and commits whatever is pending in one set-based transaction. Callers await their own outcome,
so a finish is still committed before the engine acts on it. Log lines are flushed at least every
`log_interval` seconds, so a running subtask's log keeps growing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from obstop.controller.store import ClaimRequest, Finished, FinishRequest, Handoff, LeaseLost, Store
from obstop.controller.store.models import now

log = logging.getLogger("obstop.writer")

Claimer = Callable[[], ClaimRequest | None]  # what the finishing transaction may claim for the engine
OnHandoff = Callable[[Handoff | None, bool], None]  # (what was claimed, whether anything was promoted)


@dataclass
class _Batch:
    logs: list[tuple[int, Any, str]] = field(default_factory=list)
    finishes: list[tuple[FinishRequest, asyncio.Future[Finished]]] = field(default_factory=list)
    begins: list[tuple[tuple[str, int, str, str], asyncio.Future[dict[str, Any] | None]]] = field(
        default_factory=list
    )

    def __bool__(self) -> bool:
        return bool(self.logs or self.finishes or self.begins)


class Writer:
    def __init__(self, store: Store, *, max_batch: int = 2000, log_interval: float = 0.1) -> None:
        self.store = store
        self.max_batch = max_batch
        self.log_interval = log_interval
        self._pending = _Batch()
        self._kick = asyncio.Event()
        self.claimer: Claimer | None = None  # set by the engine: the next stage claimed with the finishes
        self.on_handoff: OnHandoff | None = None

    def log(self, subtask_id: int, line: str) -> None:
        self._pending.logs.append((subtask_id, now(), line))
        if len(self._pending.logs) >= self.max_batch:
            self._kick.set()

    async def finish(self, request: FinishRequest) -> Finished:
        fut: asyncio.Future[Finished] = asyncio.get_running_loop().create_future()
        self._pending.finishes.append((request, fut))
        self._kick.set()
        return await fut

    async def command_begin(
        self, command_id: str, subtask_id: int, agent_id: str, kind: str
    ) -> dict[str, Any] | None:
        """Record a command before it is sent; its recorded result if the id is known."""
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._pending.begins.append(((command_id, subtask_id, agent_id, kind), fut))
        self._kick.set()
        return await fut

    async def run(self, stopping: asyncio.Event) -> None:
        """Commit batches until stopping is set and nothing is pending."""
        while True:
            if not self._pending:
                if stopping.is_set():
                    return
                waits = [asyncio.ensure_future(self._kick.wait()), asyncio.ensure_future(stopping.wait())]
                await asyncio.wait(waits, timeout=self.log_interval, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
            self._kick.clear()
            batch, self._pending = self._pending, _Batch()
            if batch:
                await asyncio.shield(self._commit(batch))

    async def _commit(self, batch: _Batch) -> None:
        started = time.monotonic()
        try:
            claim = self.claimer() if self.claimer is not None and batch.finishes else None
            written = await self.store.finishes.write_batch(
                batch.logs, [r for r, _ in batch.finishes], [b for b, _ in batch.begins], claim
            )
        except Exception as exc:
            futures: list[asyncio.Future[Any]] = [f for _, f in batch.finishes] + [f for _, f in batch.begins]
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
            raise
        log.debug(
            "committed %d finish(es), %d command record(s), %d log line(s) in %.0f ms",
            len(batch.finishes),
            len(batch.begins),
            len(batch.logs),
            (time.monotonic() - started) * 1000,
        )
        finished, recorded = written.outcomes, written.recorded
        if self.on_handoff is not None and batch.finishes:  # before the finishers hear: the next stage runs
            promoted = any(isinstance(o, Finished) and o.promoted for o in finished)
            self.on_handoff(written.handoff, promoted)
        # a caller cancelled meanwhile (step timeout, drain) has a done future; its outcome is committed
        for (_, fut), outcome in zip(batch.finishes, finished, strict=True):
            if fut.done():
                continue
            if isinstance(outcome, LeaseLost):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)
        for begin, bfut in batch.begins:
            if not bfut.done():
                bfut.set_result(recorded.get(begin[0]))
