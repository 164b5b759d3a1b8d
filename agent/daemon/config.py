"""The agent's configuration (TOML; every declared key also settable as OBSTOP_SECTION__KEY)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from obstop.agent import tomlconf
from obstop.agent.errors import ConfigError
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.tomlconf import ConfigPath, Section


class AgentMqtt(Section):
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = Field(default=None, description="default: the agent_id")
    password_file: ConfigPath | None = None
    ca_file: ConfigPath | None = None


class AgentConfig(Section):
    agent_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=128)
    local_host: str | None = Field(default=None, description="inventory name of this host (default agent_id)")
    state_dir: ConfigPath = Path("/var/lib/obstop-agent")
    controller_public_key: ConfigPath
    clock_skew_seconds: float = 30.0
    max_concurrent_commands: int = Field(default=64, ge=1)
    log_level: str = Field(default="INFO", pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR)$")
    mqtt: AgentMqtt = Field(default_factory=AgentMqtt)
    ssh: list[SSHHostConfig] = Field(default_factory=list)

    @property
    def local_name(self) -> str:
        return self.local_host or self.agent_id


def load_agent_config(path: Path) -> AgentConfig:
    return tomlconf.load(AgentConfig, path, ConfigError)
