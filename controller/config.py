"""The controller's configuration (TOML, every key also settable as OBSTOP_SECTION__KEY)."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import ssl
from enum import StrEnum
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from obstop.agent import tomlconf
from obstop.agent.executors.ssh_config import SSHHostConfig
from obstop.agent.protocol import AGENT_ID_PATTERN, DEFAULT_TOPIC_PREFIX, TOPIC_PREFIX_PATTERN, valid_agent_id
from obstop.agent.tomlconf import ConfigPath, MqttUrl, Section, broker_urls
from obstop.controller.errors import ConfigError


class Role(StrEnum):
    CLUSTER_MANAGER = "CLUSTER_MANAGER"
    TASK_MANAGER = "TASK_MANAGER"
    TASK_VIEWER = "TASK_VIEWER"


class UserConfig(Section):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^:\s]+$")
    password_hash: str = Field(pattern=r"^pbkdf2_sha256\$\d+\$[^$]+\$[^$]+$")
    roles: list[Role] = Field(default_factory=list)

    @field_validator("password_hash")
    @classmethod
    def _cost(cls, v: str) -> str:
        iterations = int(v.split("$")[1])
        if not 1_000 <= iterations <= 10_000_000:
            raise ValueError(
                f"{iterations} PBKDF2 iterations: expected 1,000 to 10,000,000 (`obstop passwd`)"
            )
        return v


class ApiConfig(Section):
    listen: str = "127.0.0.1:8080"
    users: list[UserConfig] = Field(default_factory=list)
    failed_logins_per_address: int = Field(
        default=10, ge=1, description="failed logins from one client address per window before 429"
    )
    failed_logins_per_user: int = Field(default=10, ge=1, description="failed logins as one user per window")
    failed_logins_window_seconds: float = Field(default=60.0, gt=0, le=86400)
    tls_cert: ConfigPath | None = Field(default=None, description="PEM certificate (chain): the API on https")
    tls_key: ConfigPath | None = Field(default=None, description="its PEM private key")
    allow_basic_over_http: bool = Field(
        default=False,
        description="accept HTTP Basic over plain HTTP on a listener that is not loopback (a TLS proxy)",
    )

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)

    @property
    def loopback(self) -> bool:
        host = self.host_port[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def refuses_plain_basic(self) -> bool:
        """Passwords never cross a network in clear: no TLS, not loopback, and not allowed by config."""
        return self.tls_cert is None and not self.loopback and not self.allow_basic_over_http

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both (https) or neither")
        return self

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen must be HOST:PORT with a port 0..65535, not {v!r}")
        return v


class StoreConfig(Section):
    url: str = "sqlite:///state/controller.db"

    @field_validator("url")
    @classmethod
    def _relative_sqlite(cls, v: str, info: ValidationInfo) -> str:
        prefix = "sqlite:///"
        if v.startswith(prefix) and not v.startswith(prefix + "/") and v != prefix + ":memory:":
            return prefix + str(tomlconf.resolve(tomlconf.base_dir(info), v[len(prefix) :]))
        if not v.startswith((prefix, "postgresql://", "postgres://")):
            raise ValueError(
                f"expected sqlite:///PATH or postgresql://USER@HOST/DB, not {v.split('@')[-1]!r}"
            )
        return v


class MqttConfig(Section):
    url: MqttUrl | None = Field(
        default=None, description="mqtt://host:port or mqtts://; none: agentless only"
    )
    urls: list[MqttUrl] = Field(
        default_factory=list,
        description="the nodes of a clustered broker, tried in turn when one goes away (url: one broker)",
    )
    username: str | None = None
    password_file: ConfigPath | None = None
    ca_file: ConfigPath | None = None
    client_id: str | None = None
    topic_prefix: str = Field(
        default=DEFAULT_TOPIC_PREFIX,
        max_length=64,
        pattern=TOPIC_PREFIX_PATTERN,
        description="the deployment's namespace on the broker; the same on its agents",
    )

    @model_validator(mode="after")
    def _first_of_urls(self) -> MqttConfig:
        if self.urls and self.url is None:
            self.url = self.urls[0]  # `url` set means "agents over MQTT" everywhere it is read
        return self

    @property
    def broker_urls(self) -> list[str]:
        return broker_urls(self.url, self.urls)


class SigningConfig(Section):
    private_key: ConfigPath | None = None
    agent_keys_dir: ConfigPath | None = Field(
        default=None, description="a directory of AGENT_ID.pub files: each agent's event-signing key"
    )
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

    @field_validator("via")
    @classmethod
    def _agent_ids(cls, v: dict[str, str]) -> dict[str, str]:
        for host, agent in v.items():
            if not valid_agent_id(agent):
                raise ValueError(f"{host} = {agent!r}: not an agent id ({AGENT_ID_PATTERN})")
        return v


class ClusterSQLConfig(Section):
    """How the controller reaches a cluster's sys tenant (the minor freeze; the majority check and STOP/START
    ZONE/SERVER of partial stops). Secrets by file only."""

    cluster_id: int = Field(gt=0)
    user: str = "root@sys"
    password_file: ConfigPath | None = None
    database: str = "oceanbase"
    connect_timeout: float = Field(default=5.0, gt=0)
    statement_timeout: float = Field(default=30.0, gt=0)
    service_timeout: float = Field(
        default=600.0,
        gt=0,
        description="bound of ALTER SYSTEM STOP/START ZONE/SERVER and of the wait for leaders to move away",
    )


class StopConfig(Section):
    signal: str = "SIGTERM"

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, v: str) -> str:
        name = v.upper() if v.upper().startswith("SIG") else "SIG" + v.upper()
        if name not in signal.Signals.__members__ or name in ("SIGSTOP", "SIGCONT"):
            raise ValueError(f"unknown or unusable signal {v!r} (e.g. SIGTERM, SIGINT, SIGQUIT, SIGKILL)")
        return name

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


def check_config(config: ControllerConfig, path: Path) -> None:
    """Everything the file names that can be checked before the controller starts: the inventory, keys
    that must parse, files that must be readable, the API's address. Raises ConfigError: one line naming
    the file, the key and what is wrong (the daemon says it and exits 2)."""
    from obstop.agent import signing
    from obstop.agent.errors import ConfigError as AgentConfigError
    from obstop.controller.inventory import load_inventory

    def fail(key: str, what: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {what}")

    try:
        inventory = load_inventory(config.inventory)
    except ConfigError as exc:
        raise fail("inventory", str(exc).removeprefix("inventory ")) from exc
    if config.mqtt.url:
        if config.signing.private_key is None:
            raise fail("signing.private_key", "required with [mqtt] url: agents act only on signed commands")
        if config.signing.agent_keys_dir is None:
            raise fail(
                "signing.agent_keys_dir",
                "required with [mqtt] url: a directory of AGENT_ID.pub files (the controller accepts only "
                "events its agents signed)",
            )
    if config.signing.private_key is not None:
        try:
            signing.load_private(config.signing.private_key)
        except AgentConfigError as exc:
            raise fail("signing.private_key", str(exc)) from exc
    if config.signing.agent_keys_dir is not None:
        try:
            signing.AgentKeys(config.signing.agent_keys_dir).check()
        except AgentConfigError as exc:
            raise fail("signing.agent_keys_dir", str(exc)) from exc
    tomlconf.check_readable(config.mqtt.password_file, "mqtt.password_file", fail)
    tomlconf.check_ca_file(config.mqtt.ca_file, "mqtt.ca_file", fail)
    known = {c.id for c in inventory.clusters}
    for i, sql in enumerate(config.cluster_sql):
        if sql.cluster_id not in known:
            raise fail(f"cluster_sql.{i}.cluster_id", f"no cluster {sql.cluster_id} in {config.inventory}")
        tomlconf.check_readable(sql.password_file, f"cluster_sql.{i}.password_file", fail)
    for i, h in enumerate(config.agentless.ssh):
        tomlconf.check_readable(h.identity, f"agentless.ssh.{i}.identity", fail)
        tomlconf.check_readable(h.known_hosts, f"agentless.ssh.{i}.known_hosts", fail)
    _check_store(config.store.url, fail)
    _check_listen(config.api, fail)
    _check_tls(config.api, fail)


def _check_tls(api: ApiConfig, fail: tomlconf.Fail) -> None:
    if api.tls_cert is None or api.tls_key is None:
        return
    tomlconf.check_readable(api.tls_cert, "api.tls_cert", fail)
    tomlconf.check_readable(api.tls_key, "api.tls_key", fail)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(api.tls_cert, api.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise fail(
            "api.tls_cert",
            f"{api.tls_cert} and {api.tls_key}: not a PEM certificate and its key: {tomlconf.one_line(exc)}",
        ) from exc


def _check_store(url: str, fail: tomlconf.Fail) -> None:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return  # PostgreSQL: reached when the controller opens it (an error there is one line too)
    folder = Path(url[len(prefix) :]).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail("store.url", f"cannot create {folder}: {tomlconf.one_line(exc)}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise fail("store.url", f"{folder} is not writable by this user")


def _check_listen(api: ApiConfig, fail: tomlconf.Fail) -> None:
    host, port = api.host_port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
    except OSError as exc:
        raise fail("api.listen", f"cannot listen on {api.listen}: {tomlconf.one_line(exc)}") from exc


def load_config(path: Path) -> ControllerConfig:
    """Load and validate (no file checks: see check_config, which the daemon runs at start)."""
    return tomlconf.load(ControllerConfig, path, ConfigError)
