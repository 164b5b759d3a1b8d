"""What routes depend on: the controller's parts (app.state, never a module global) and the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from prometheus_client import CollectorRegistry

from obstop.controller.auth import Authenticator, Caller
from obstop.controller.config import ControllerConfig, Role
from obstop.controller.engine.service import Creator, Service
from obstop.controller.errors import Unauthorized
from obstop.controller.metrics import Metrics
from obstop.controller.store import Store

MAX_ID = 2**62  # ids, and anything multiplied into an offset, stay within SQL's BIGINT


@dataclass
class Controller:
    """What the routes need; owned by the daemon."""

    config: ControllerConfig
    store: Store  # reads; every change goes through the service
    service: Service
    auth: Authenticator
    registry: CollectorRegistry
    metrics: Metrics | None = None  # refreshed at each scrape of /metrics


@dataclass(frozen=True)
class User:
    id: int
    name: str
    roles: frozenset[Role]

    @property
    def creator(self) -> Creator:
        return Creator(self.id, self.name)


def get_controller(request: Request) -> Controller:
    ctl: Controller = request.app.state.controller
    return ctl


def role(wanted: Role) -> Any:
    """A dependency: the caller, authenticated by the API's gate before anything was read (api/gate.py),
    who must hold the role."""

    def check(request: Request) -> User:
        caller: Caller | None = getattr(request.state, "caller", None)
        if caller is None:
            raise Unauthorized("authentication required: HTTP Basic credentials of a configured user")
        Authenticator.require(caller.roles, wanted, caller.name)
        return User(caller.id, caller.name, caller.roles)

    check.role = wanted  # type: ignore[attr-defined]  # the OpenAPI document lists 401/403 for it
    return Depends(check)


Ctl = Annotated[Controller, Depends(get_controller)]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
