"""The agent's configuration (TOML; every declared key also settable as OBSTOP_SECTION__KEY)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from obstop.agent import signing, tomlconf
from obstop.agent.errors import ConfigError
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.protocol import AGENT_ID_PATTERN, DEFAULT_TOPIC_PREFIX, TOPIC_PREFIX_PATTERN
from obstop.agent.tomlconf import ConfigPath, MqttUrl, Section


class AgentMqtt(Section):
    url: MqttUrl = "mqtt://127.0.0.1:1883"
    urls: list[MqttUrl] = Field(
        default_factory=list,
        description="the nodes of a clustered broker, tried in turn when one goes away (url: one broker)",
    )
    username: str | None = Field(default=None, description="default: the agent_id")
    password_file: ConfigPath | None = None
    ca_file: ConfigPath | None = None
    topic_prefix: str = Field(
        default=DEFAULT_TOPIC_PREFIX,
        max_length=64,
        pattern=TOPIC_PREFIX_PATTERN,
        description="the deployment's namespace on the broker; the same on the controller",
    )

    @model_validator(mode="after")
    def _first_of_urls(self) -> AgentMqtt:
        if self.urls and "url" not in self.model_fields_set:
            self.url = self.urls[0]  # not the default broker: the list alone says where
        return self

    @property
    def broker_urls(self) -> list[str]:
        return tomlconf.broker_urls(self.url, self.urls)


class AgentConfig(Section):
    agent_id: str = Field(pattern=AGENT_ID_PATTERN, max_length=128)
    local_host: str | None = Field(default=None, description="inventory name of this host (default agent_id)")
    state_dir: ConfigPath = Path("/var/lib/obstop-agent")
    controller_public_key: ConfigPath
    private_key: ConfigPath | None = Field(
        default=None, description="its event-signing key; default STATE_DIR/AGENT_ID.key, made at first start"
    )
    clock_skew_seconds: float = Field(default=30.0, ge=0, le=3600)
    max_concurrent_commands: int = Field(default=64, ge=1)
    log_level: str = Field(default="INFO", pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR)$")
    mqtt: AgentMqtt = Field(default_factory=AgentMqtt)
    ssh: list[SSHHostConfig] = Field(default_factory=list)

    @property
    def local_name(self) -> str:
        return self.local_host or self.agent_id

    @property
    def key_path(self) -> Path:
        return self.private_key or Path(self.state_dir) / f"{self.agent_id}.key"

    @field_validator("agent_id")
    @classmethod
    def _not_dots(cls, v: str) -> str:
        if v in (".", ".."):
            raise ValueError("agent_id must name the agent, not a directory")
        return v


def check_agent_config(config: AgentConfig, path: Path) -> None:
    """Everything the file names that can be checked before the agent starts: keys parse (the agent's own
    may not exist yet: it is made at first start), secret and CA files are readable, the state directory
    is usable. Raises ConfigError: one line naming the file, the key and what is wrong."""

    def fail(key: str, what: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {what}")

    try:
        signing.load_public(config.controller_public_key)
    except ConfigError as exc:
        raise fail("controller_public_key", str(exc)) from exc
    key = config.key_path
    if key.exists():
        try:
            signing.load_private(key)
        except ConfigError as exc:
            raise fail("private_key", str(exc)) from exc
        if key.stat().st_mode & 0o077:
            raise fail("private_key", f"{key} is readable by others than its owner: chmod 600 {key}")
    state = Path(config.state_dir)
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail("state_dir", f"cannot create {state}: {tomlconf.one_line(exc)}") from exc
    if not os.access(state, os.W_OK | os.X_OK):
        raise fail("state_dir", f"{state} is not writable by this user")
    tomlconf.check_readable(config.mqtt.password_file, "mqtt.password_file", fail)
    tomlconf.check_ca_file(config.mqtt.ca_file, "mqtt.ca_file", fail)
    for i, h in enumerate(config.ssh):
        tomlconf.check_readable(h.identity, f"ssh.{i}.identity", fail)
        tomlconf.check_readable(h.known_hosts, f"ssh.{i}.known_hosts", fail)


def load_agent_config(path: Path) -> AgentConfig:
    """Load and validate (no file checks: see check_agent_config, which the daemon runs at start)."""
    return tomlconf.load(AgentConfig, path, ConfigError)
