"""How a route answers an operation on a cluster: the task it created, or with `?dryRun=true` its plan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from obstop.controller import views
from obstop.controller.api.deps import Controller, User
from obstop.controller.api.envelope import JSONResponse, envelope
from obstop.controller.engine.service import Prepared

DryRun = Annotated[
    bool,
    Query(
        description="the plan: the DAG and every check (agents, identities, SQL, statuses, the lock, the "
        "majority for a partial stop), nothing done, no task created; answers what would happen to each "
        "server and what blocks it"
    ),
]


async def operate(
    request: Request, ctl: Controller, prepared: Prepared, user: User, dry_run: bool
) -> JSONResponse:
    if dry_run:
        return envelope(request, await ctl.service.plan(prepared))
    created = await ctl.service.create(prepared, user.creator)
    return envelope(request, views.task_view(created.task, created.cluster, created.subtasks))
