"""One group-commit transaction: log lines, command records, finishes, and the hand-off to the next stage.

The subtasks a batch's finishes promote are claimed in the same transaction (under the engine's lease, up
to its free slots), so the next stage starts without a claim of its own; a promoted Wait node (it runs
nothing) is finished there too, and what it promotes claimed in turn. Each of those moves is the same
compare-and-set through the subtask machine, with its history row and log lines, as the engine's own
claim and finish make.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from obstop.controller.states.subtask import BACKWARD, Operation
from obstop.controller.store import commands
from obstop.controller.store.db import Database
from obstop.controller.store.finish import Finished, FinishRequest, LeaseLost, finish_in
from obstop.controller.store.journal import Journal
from obstop.controller.store.leases import Claimed, claim_in

WAIT_STEP = "wait"  # steps/dag.py's Step.WAIT: it runs nothing
WAIT_LINES = {
    Operation.EXECUTE: "upstreams done",
    Operation.RETRY: "upstreams done",
    Operation.ROLLBACK: "downstreams rolled back",
}  # the lines the engine's runner closes a Wait node's log with
MAX_ROUNDS = 8  # claim, finish the Wait nodes claimed, claim what they promoted...


@dataclass(frozen=True)
class ClaimRequest:
    """Claim promoted subtasks in the finishing transaction: under this owner's lease, at most limit."""

    owner: str
    lease: float
    limit: int


@dataclass
class Handoff:
    claimed: list[Claimed] = field(default_factory=list)  # for the engine to run
    waited: list[tuple[Claimed, Finished]] = field(default_factory=list)  # Wait nodes done in the tx
    saturated: bool = False  # the limit was reached: READY subtasks may be left unclaimed


@dataclass
class Written:
    outcomes: list[Finished | LeaseLost]
    recorded: dict[str, dict[str, Any] | None]
    handoff: Handoff | None  # None: no claim was made (nothing promoted, or not asked)


class Finishes:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def write_batch(
        self,
        logs: Sequence[tuple[int, datetime, str]],
        finishes: Sequence[FinishRequest],
        begins: Sequence[commands.Begin],
        claim: ClaimRequest | None = None,
    ) -> Written:
        # the history rows and log lines of every step below, written at the end with a statement each
        journal = Journal(lines=[{"subtask_id": i, "at": at, "line": ln} for i, at, ln in logs])
        async with self.db.tx() as s:
            recorded = await commands.begin(s, begins) if begins else {}
            outcomes = await finish_in(s, finishes, journal) if finishes else []
            promoted = any(isinstance(o, Finished) and o.promoted for o in outcomes)
            handoff = await self._handoff(s, claim, journal) if claim is not None and promoted else None
            await journal.flush(s)
        return Written(outcomes, recorded, handoff)

    async def _handoff(self, s: AsyncSession, claim: ClaimRequest, journal: Journal) -> Handoff:
        out = Handoff()
        for _ in range(MAX_ROUNDS):
            limit = claim.limit - len(out.claimed)
            if limit <= 0:
                out.saturated = True
                return out
            got = await claim_in(s, self.db.is_sqlite, claim.owner, claim.lease, limit, journal)
            out.saturated = len(got) == limit
            waits = [c for c in got if c.step == WAIT_STEP and c.operation in WAIT_LINES]
            out.claimed += [c for c in got if c not in waits]
            if not waits:
                return out
            reqs = [
                FinishRequest(
                    c.id,
                    claim.owner,
                    True,
                    WAIT_LINES[Operation(c.operation)],
                    backward=c.operation in BACKWARD,
                )
                for c in waits
            ]
            done = await finish_in(s, reqs, journal)
            out.waited += [(c, d) for c, d in zip(waits, done, strict=True) if isinstance(d, Finished)]
            if not any(isinstance(d, Finished) and d.promoted for d in done):
                return out
        out.saturated = True  # rounds left: the engine's own claim takes the rest
        return out
