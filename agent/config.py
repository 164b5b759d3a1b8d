"""The agent's configuration (TOML; every key also settable as OBSTOP_SECTION__KEY)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from agent import tomlconf
from agent.errors import ConfigError
from agent.executor_ssh import SSHHost, SSHTarget


def _base(info: ValidationInfo) -> Path:
    return Path((info.context or {}).get("base_dir", "."))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentMqtt(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = Field(default=None, description="default: the agent_id")
    password_file: Path | None = None
    ca_file: Path | None = None

    @field_validator("password_file", "ca_file")
    @classmethod
    def _paths(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return None if v is None else tomlconf.resolve(_base(info), v)


class SSHHostConfig(_Section):
    """A host reached over SSH (by an agent, or by the controller agentless)."""

    host: str = Field(min_length=1, description="the host's name in the controller's inventory")
    address: str
    port: int = 22
    user: str
    identity: Path
    known_hosts: Path
    connect_timeout: float = 10.0
    command_timeout: float = 30.0

    @field_validator("identity", "known_hosts")
    @classmethod
    def _paths(cls, v: Path, info: ValidationInfo) -> Path:
        return tomlconf.resolve(_base(info), v)

    def ssh_host(self, handshakes: asyncio.Semaphore) -> SSHHost:
        target = SSHTarget(
            address=self.address,
            port=self.port,
            user=self.user,
            identity=str(self.identity),
            known_hosts=str(self.known_hosts),
            connect_timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
        )
        return SSHHost(self.host, target, handshakes=handshakes)


class AgentConfig(_Section):
    agent_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    local_host: str | None = Field(default=None, description="inventory name of this host (default agent_id)")
    state_dir: Path = Path("/var/lib/obstop-agent")
    controller_public_key: Path
    clock_skew_seconds: float = 30.0
    max_concurrent_commands: int = Field(default=64, ge=1)
    log_level: str = Field(default="INFO", pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR)$")
    mqtt: AgentMqtt = Field(default_factory=AgentMqtt)
    ssh: list[SSHHostConfig] = Field(default_factory=list)

    @field_validator("state_dir", "controller_public_key")
    @classmethod
    def _paths(cls, v: Path, info: ValidationInfo) -> Path:
        return tomlconf.resolve(_base(info), v)

    @property
    def local_name(self) -> str:
        return self.local_host or self.agent_id


def load_agent_config(path: Path) -> AgentConfig:
    return tomlconf.load(AgentConfig, path, ConfigError)
