"""The controller's configuration (TOML, every key also settable as OBSTOP_SECTION__KEY)."""

from __future__ import annotations

import socket
from enum import StrEnum
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from obstop.agent import tomlconf
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.tomlconf import ConfigPath, Section
from obstop.controller.errors import ConfigError


class Role(StrEnum):
    CLUSTER_MANAGER = "CLUSTER_MANAGER"
    TASK_MANAGER = "TASK_MANAGER"
    TASK_VIEWER = "TASK_VIEWER"


class UserConfig(Section):
    name: str = Field(min_length=1)
    password_hash: str = Field(pattern=r"^pbkdf2_sha256\$\d+\$[^$]+\$[^$]+$")
    roles: list[Role] = Field(default_factory=list)


class ApiConfig(Section):
    listen: str = "127.0.0.1:8080"
    users: list[UserConfig] = Field(default_factory=list)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("listen must be HOST:PORT")
        return v


class StoreConfig(Section):
    url: str = "sqlite:///state/controller.db"

    @field_validator("url")
    @classmethod
    def _relative_sqlite(cls, v: str, info: ValidationInfo) -> str:
        prefix = "sqlite:///"
        if v.startswith(prefix) and not v.startswith(prefix + "/") and v != prefix + ":memory:":
            return prefix + str(tomlconf.resolve(tomlconf.base_dir(info), v[len(prefix) :]))
        return v


class MqttConfig(Section):
    url: str | None = Field(default=None, description="mqtt://host:port or mqtts://; none: agentless only")
    username: str | None = None
    password_file: ConfigPath | None = None
    ca_file: ConfigPath | None = None
    client_id: str | None = None


class SigningConfig(Section):
    private_key: ConfigPath | None = None
    command_ttl_seconds: float = Field(default=300.0, gt=0)


class AgentlessConfig(Section):
    """Hosts the controller reaches itself, with no agent: this machine, or over SSH like OBD."""

    local_hosts: list[str] = Field(default_factory=list)
    ssh: list[SSHHostConfig] = Field(default_factory=list)


class AgentsConfig(Section):
    """Which agent serves a host: by default the agent whose agent_id is the host's name."""

    via: dict[str, str] = Field(
        default_factory=dict, description="host -> agent_id (e.g. an SSH-serving agent)"
    )


class ClusterSQLConfig(Section):
    """How the controller reaches a cluster's sys tenant (for the minor freeze). Secrets by file only."""

    cluster_id: int = Field(gt=0)
    user: str = "root@sys"
    password_file: ConfigPath | None = None
    database: str = "oceanbase"
    connect_timeout: float = Field(default=5.0, gt=0)
    statement_timeout: float = Field(default=30.0, gt=0)


class StopConfig(Section):
    signal: str = "SIGTERM"
    term_timeout: float = Field(default=10.0, gt=0)
    kill_timeout: float = Field(default=10.0, gt=0)
    port_timeout: float = Field(default=30.0, gt=0)
    subtask_timeout: float = Field(default=120.0, gt=0, description="bound of each process subtask")
    resend_interval: float = Field(default=2.0, gt=0, description="re-send a command without a result")


class StartConfig(Section):
    launch_timeout: float = Field(default=30.0, gt=0, description="bound of `./bin/observer` returning")
    ready_timeout: float = Field(default=120.0, gt=0, description="until it listens and answers SQL")
    subtask_timeout: float = Field(default=180.0, gt=0, description="bound of each start process subtask")


class WatchConfig(Section):
    """How the observers' state is watched (statuses follow it when no task holds the cluster)."""

    probe_interval: float = Field(default=5.0, ge=0.05, description="seconds between probes")
    report_interval: float = Field(default=30.0, ge=0.1, description="seconds between full reports")


class EngineConfig(Section):
    controller_id: str = Field(default_factory=socket.gethostname)
    lease_seconds: float = Field(default=30.0, gt=1)
    max_concurrency: int = Field(default=512, ge=1)
    step_timeout: float = Field(default=60.0, gt=0, description="bound of bookkeeping subtasks")


class ControllerConfig(Section):
    inventory: ConfigPath = Path("inventory.toml")
    log_level: str = Field(default="INFO", pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR)$")
    api: ApiConfig = Field(default_factory=ApiConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)
    agentless: AgentlessConfig = Field(default_factory=AgentlessConfig)
    agents: AgentsConfig = Field(default_factory=AgentsConfig)
    cluster_sql: list[ClusterSQLConfig] = Field(default_factory=list)
    stop: StopConfig = Field(default_factory=StopConfig)
    start: StartConfig = Field(default_factory=StartConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _unique_users(self) -> ControllerConfig:
        names = [u.name for u in self.api.users]
        if len(names) != len(set(names)):
            raise ValueError("api.users: a user name appears twice")
        return self


def load_config(path: Path) -> ControllerConfig:
    return tomlconf.load(ControllerConfig, path, ConfigError)
