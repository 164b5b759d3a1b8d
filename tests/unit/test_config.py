"""Config files of both daemons and the inventory: what the environment may override (only declared keys),
relative paths, and refusals that name the file, the cluster and the field. Files only: no services."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from obstop.agent import signing, tomlconf
from obstop.agent.daemon.config import AgentConfig, load_agent_config
from obstop.agent.errors import ConfigError as AgentConfigError
from obstop.controller.auth import hash_password
from obstop.controller.config import ControllerConfig, load_config
from obstop.controller.errors import ConfigError
from obstop.controller.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]
# what an operator's shell may hold that is no config key: the ops client's and the CLI's own variables
NOT_KEYS = {
    "OBSTOP_URL": "http://127.0.0.1:8080",
    "OBSTOP_USER": "admin",
    "OBSTOP_PASSWORD": "secret",
    "OBSTOP_PASSWORD_FILE": "/home/ops/.obstop-password",
    "OBSTOP_AGENT_CONFIG": "/etc/obstop/agent.toml",
    "OBSTOP_CONFIG": "/etc/obstop/controller.toml",
    "OBSTOP_NOT_A_KEY": "1",
    "OBSTOP_API__NOT_A_KEY": "1",
    "OBSTOP_STORE": "sqlite:///elsewhere.db",
}

GOOD_SERVER = (
    '{ id = 5, zone = "zone1", host = "h1", ip = "127.0.0.11", home_path = "/home/admin/oceanbase" }'
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "[[clusters]]\nid = 1\nname = 'c'\nob_cluster_id = 2\nservers = [{ id = 5, zone = 'z', host = 'h1', "
            "ip = '1.2.3.4' }]",
            ["cluster #1", "id 1", "name c", "servers.0.home_path", "Field required"],
        ),
        ("[[clusters]]\nid = 1\nname = 'c'\nob_cluster_id = 2\nservers = []", ["servers", "at least 1"]),
        (
            f"[[clusters]]\nid = 'x'\nname = 'c'\nob_cluster_id = 2\nservers = [{GOOD_SERVER}]",
            ["id: Input should be"],
        ),
        (
            f"[[clusters]]\nid = 1\nname = 'a'\nob_cluster_id = 2\nservers = [{GOOD_SERVER}]\n"
            f"[[clusters]]\nid = 1\nname = 'b'\nob_cluster_id = 3\nservers = []",
            ["cluster #2"],
        ),
        (
            f"[[clusters]]\nid = 1\nname = 'a'\nob_cluster_id = 2\nservers = [{GOOD_SERVER}]\n"
            f"[[clusters]]\nid = 2\nname = 'b'\nob_cluster_id = 3\nservers = [{GOOD_SERVER}]",
            ["server id 5"],
        ),
        ("[[clusters]\n", ["inventory"]),
    ],
)
def test_malformed_inventory_is_refused(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_inventory(path)
    assert str(path) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_inventory_example_loads() -> None:
    inv = load_inventory(REPO / "deploy" / "inventory.example.toml")
    assert inv.clusters and all(c.servers for c in inv.clusters)


# --- the controller's config -----------------------------------------------------------------------


@pytest.fixture
def controller_toml(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "controller.toml"
    path.parent.mkdir()
    path.write_text(
        'inventory = "inv.toml"\n'
        '[api]\nlisten = "127.0.0.1:8080"\n'
        '[store]\nurl = "sqlite:///state/c.db"\n'
        '[mqtt]\nurl = "mqtt://broker:1883"\npassword_file = "mqtt.password"\n'
        '[signing]\nprivate_key = "keys/command-signing.key"\n'
        '[[cluster_sql]]\ncluster_id = 1\npassword_file = "/abs/sys.password"\n'
    )
    return path


def test_controller_relative_paths_are_relative_to_the_file(controller_toml: Path) -> None:
    cfg = load_config(controller_toml)
    etc = controller_toml.parent.resolve()
    assert cfg.inventory == etc / "inv.toml"
    assert cfg.store.url == f"sqlite:///{etc}/state/c.db"
    assert cfg.mqtt.password_file == etc / "mqtt.password"
    assert cfg.signing.private_key == etc / "keys" / "command-signing.key"
    assert cfg.cluster_sql[0].password_file == Path("/abs/sys.password")


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("OBSTOP_API__LISTEN", "127.0.0.1:9999", lambda c: c.api.host_port == ("127.0.0.1", 9999)),
        (
            "OBSTOP_STORE__URL",
            "postgresql://obstop@db/obstop",
            lambda c: c.store.url == "postgresql://obstop@db/obstop",
        ),
        ("OBSTOP_MQTT__URL", "mqtts://other:8883", lambda c: c.mqtt.url == "mqtts://other:8883"),
        ("OBSTOP_LOG_LEVEL", "DEBUG", lambda c: c.log_level == "DEBUG"),
        ("OBSTOP_STOP__TERM_TIMEOUT", "2.5", lambda c: c.stop.term_timeout == 2.5),
        ("OBSTOP_ENGINE__CONTROLLER_ID", "ctl-9", lambda c: c.engine.controller_id == "ctl-9"),
        ("OBSTOP_AGENTLESS__LOCAL_HOSTS", '["h1", "h2"]', lambda c: c.agentless.local_hosts == ["h1", "h2"]),
        ("OBSTOP_AGENTS__VIA", '{"h9": "h1"}', lambda c: c.agents.via == {"h9": "h1"}),
    ],
)
def test_a_declared_key_is_overridden_from_the_environment(
    controller_toml: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    read: Callable[[ControllerConfig], bool],
) -> None:
    assert not read(load_config(controller_toml))
    monkeypatch.setenv(name, value)
    cfg = load_config(controller_toml)
    assert read(cfg), cfg


def test_the_controller_ignores_undeclared_obstop_variables(
    controller_toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = load_config(controller_toml)
    for name, value in NOT_KEYS.items():
        monkeypatch.setenv(name, value)
    assert load_config(controller_toml) == plain


@pytest.mark.parametrize(
    ("text", "env", "words"),
    [
        ('[api]\nlisten = "8080"\n', {}, "api.listen"),
        ("[api]\nbogus = 1\n", {}, "api.bogus"),
        ("[stop]\nterm_timeout = -1\n", {}, "stop.term_timeout"),
        ('log_level = "LOUD"\n', {}, "log_level"),
        ("", {"OBSTOP_STOP__TERM_TIMEOUT": "soon"}, "stop.term_timeout"),
        ("", {"OBSTOP_API__LISTEN": "nowhere"}, "api.listen"),
        ("", {"OBSTOP_ENGINE__MAX_CONCURRENCY": "0"}, "engine.max_concurrency"),
        ('[[api.users]]\nname = "a"\npassword_hash = "plain-text"\n', {}, "api.users.0.password_hash"),
        ("[api\n", {}, "line 1"),
    ],
)
def test_a_bad_value_names_the_file_and_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str], words: str
) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(text)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value), err.value


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path}/none.toml: no such file"):
        load_config(tmp_path / "none.toml")


def test_the_controller_example_is_valid_once_its_password_hashes_are_filled_in(tmp_path: Path) -> None:
    text = (REPO / "deploy" / "controller.example.toml").read_text()
    path = tmp_path / "controller.toml"
    path.write_text(text.replace("pbkdf2_sha256$...", hash_password("pw", iterations=1000)))
    cfg = load_config(path)
    assert [u.name for u in cfg.api.users] == ["admin", "oncall"]


# --- the agent's config ----------------------------------------------------------------------------


@pytest.fixture
def agent_toml(tmp_path: Path) -> Path:
    """An agent.toml whose relative paths name files that exist (loading checks them)."""
    path = tmp_path / "etc" / "agent.toml"
    path.parent.mkdir()
    signing.generate(path.parent / "keys")
    (path.parent / "mqtt.password").write_text("secret\n")
    path.write_text(
        'agent_id = "h1"\nstate_dir = "state"\ncontroller_public_key = "keys/command-signing.pub"\n'
        '[mqtt]\nurl = "mqtt://broker:1883"\npassword_file = "mqtt.password"\n'
    )
    return path


def test_agent_relative_paths_are_relative_to_the_file(agent_toml: Path) -> None:
    cfg = load_agent_config(agent_toml)
    etc = agent_toml.parent.resolve()
    assert cfg.state_dir == etc / "state"
    assert cfg.controller_public_key == etc / "keys" / "command-signing.pub"
    assert cfg.mqtt.password_file == etc / "mqtt.password"
    assert cfg.local_name == "h1"


def test_agent_declared_keys_come_from_the_environment(
    agent_toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSTOP_MQTT__URL", "mqtts://other:8883")
    monkeypatch.setenv("OBSTOP_MQTT__USERNAME", "agent-h1")
    monkeypatch.setenv("OBSTOP_LOCAL_HOST", "h1.example")
    monkeypatch.setenv("OBSTOP_MAX_CONCURRENT_COMMANDS", "8")
    cfg = load_agent_config(agent_toml)
    assert (cfg.mqtt.url, cfg.mqtt.username, cfg.local_name) == (
        "mqtts://other:8883",
        "agent-h1",
        "h1.example",
    )
    assert cfg.max_concurrent_commands == 8


def test_the_agent_ignores_undeclared_obstop_variables(
    agent_toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = load_agent_config(agent_toml)
    for name, value in NOT_KEYS.items():
        monkeypatch.setenv(name, value)
    assert load_agent_config(agent_toml) == plain


@pytest.mark.parametrize(
    ("text", "env", "words"),
    [
        ('agent_id = "h 1"\ncontroller_public_key = "k"\n', {}, "agent_id"),
        ('agent_id = "h1"\n', {}, "controller_public_key: Field required"),
        (
            'agent_id = "h1"\ncontroller_public_key = "k"\n',
            {"OBSTOP_MAX_CONCURRENT_COMMANDS": "0"},
            "max_concurrent_commands",
        ),
        ('agent_id = "h1"\ncontroller_public_key = "k"\n[mqtt]\nport = 1\n', {}, "mqtt.port"),
    ],
)
def test_agent_bad_value_names_the_file_and_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str], words: str
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(AgentConfigError) as err:
        load_agent_config(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value), err.value


def test_agent_example_loads() -> None:
    cfg = load_agent_config(REPO / "deploy" / "agent.example.toml")
    assert cfg.agent_id == "h1" and cfg.mqtt.url.startswith("mqtts://")


# --- tomlconf: the environment names each model declares --------------------------------------------


def test_env_names_are_the_declared_keys_only() -> None:
    controller = tomlconf.env_names(ControllerConfig)
    assert controller["OBSTOP_STORE__URL"] == ("store", "url")
    assert controller["OBSTOP_API__LISTEN"] == ("api", "listen")
    assert controller["OBSTOP_INVENTORY"] == ("inventory",)
    agent = tomlconf.env_names(AgentConfig)
    assert agent["OBSTOP_MQTT__URL"] == ("mqtt", "url") and agent["OBSTOP_AGENT_ID"] == ("agent_id",)
    for name in NOT_KEYS:
        assert name not in controller and name not in agent


def test_env_overrides_build_the_nested_tables() -> None:
    env = {"OBSTOP_STORE__URL": "sqlite:///x.db", "OBSTOP_STOP__KILL_TIMEOUT": "3", **NOT_KEYS}
    assert tomlconf.env_overrides(ControllerConfig, env) == {
        "store": {"url": "sqlite:///x.db"},
        "stop": {"kill_timeout": "3"},
    }
    assert tomlconf.merge(
        {"stop": {"term_timeout": 1, "kill_timeout": 9}}, {"stop": {"kill_timeout": 3}}
    ) == {"stop": {"term_timeout": 1, "kill_timeout": 3}}


@pytest.mark.parametrize(
    ("mqtt", "urls"),
    [
        ({"url": "mqtt://a:1883"}, ["mqtt://a:1883"]),
        ({"urls": ["mqtt://b:1", "mqtt://c:2"]}, ["mqtt://b:1", "mqtt://c:2"]),
        ({"url": "mqtt://c:2", "urls": ["mqtt://b:1", "mqtt://c:2"]}, ["mqtt://b:1", "mqtt://c:2"]),
        ({"url": "mqtt://a:1883", "urls": ["mqtt://b:1"]}, ["mqtt://a:1883", "mqtt://b:1"]),
    ],
)
def test_broker_urls_a_list_or_one(mqtt: dict[str, object], urls: list[str]) -> None:
    """[mqtt] urls (a cluster's nodes, tried in turn) beside url (one broker, still enough alone)."""
    agent = AgentConfig.model_validate(
        {"agent_id": "h1", "controller_public_key": "k.pub", "mqtt": mqtt}
    ).mqtt
    controller = ControllerConfig.model_validate({"mqtt": mqtt}).mqtt
    assert agent.broker_urls == urls and controller.broker_urls == urls
    assert agent.url == urls[0] or agent.url == mqtt.get("url")  # never the default broker with a list
    assert controller.url is not None  # agents over MQTT, as with url alone


def test_broker_urls_from_the_environment(agent_toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSTOP_MQTT__URLS", '["mqtt://n1:1883", "mqtt://n2:1883"]')
    assert load_agent_config(agent_toml).mqtt.broker_urls == [
        "mqtt://broker:1883",
        "mqtt://n1:1883",
        "mqtt://n2:1883",
    ]
    monkeypatch.setenv("OBSTOP_MQTT__URLS", '["mqtt://n1:1883", "http://nope"]')
    with pytest.raises(AgentConfigError, match=r"mqtt\.urls\.1"):
        load_agent_config(agent_toml)
