"""What routes depend on: the controller's parts (app.state, never a module global) and the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from prometheus_client import CollectorRegistry

from obstop.controller.auth import Authenticator
from obstop.controller.config import ControllerConfig, Role
from obstop.controller.engine.service import Creator, Service
from obstop.controller.store import Store


@dataclass
class Controller:
    """What the routes need; owned by the daemon."""

    config: ControllerConfig
    store: Store  # reads; every change goes through the service
    service: Service
    auth: Authenticator
    registry: CollectorRegistry


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
    """A dependency: the authenticated caller, who must hold the role."""

    def check(request: Request) -> User:
        uid, name, roles = get_controller(request).auth.authenticate(request.headers.get("authorization"))
        Authenticator.require(roles, wanted, name)
        return User(uid, name, roles)

    return Depends(check)


Ctl = Annotated[Controller, Depends(get_controller)]
Id = Annotated[int, Path(ge=1, le=2**62)]
