"""A host reached over SSH, by an agent or by the controller agentless. No asyncssh here: a daemon whose
config lists no SSH host never imports it (agent/executors/ssh.py does, when a host is opened)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pydantic import Field

from obstop.agent.tomlconf import ConfigPath, Section

if TYPE_CHECKING:
    from obstop.agent.executors.ssh import SSHHost


class SSHHostConfig(Section):
    host: str = Field(min_length=1, description="the host's name in the controller's inventory")
    address: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1)
    identity: ConfigPath
    known_hosts: ConfigPath
    connect_timeout: float = Field(default=10.0, gt=0)
    command_timeout: float = Field(default=30.0, gt=0)

    @property
    def where(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    def open(self, handshakes: asyncio.Semaphore | None = None) -> SSHHost:
        from obstop.agent.executors.ssh import SSHHost

        return SSHHost(self, handshakes=handshakes)
