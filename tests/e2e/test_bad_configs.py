"""Bad config is found at start, whole, and said in one line: for each case the controller or the agent
exits 2 with one `error:` line naming the file, the key and what is wrong, and no traceback, ever. The
table runs through the CLI's own entry point (in one helper process); a few cases also run as real
daemons, to prove the process boundary."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from obstop.agent import signing
from obstop.controller.auth import hash_password
from obstop.fakes.net import free_port

ROOT = Path(__file__).resolve().parents[2]
Edit = Callable[[Path, dict[str, Any]], None]


def good_inventory(home: str = "/home/admin/ob") -> dict[str, Any]:
    server = {"id": 1, "zone": "z1", "host": "h1", "ip": "127.0.0.11", "home_path": home}
    return {"clusters": [{"id": 1, "name": "c", "ob_cluster_id": 1, "servers": [server]}]}


def good_controller(d: Path) -> dict[str, Any]:
    signing.generate(d / "keys")
    signing.generate(d / "keys" / "agents", agent="h1")
    (d / "sys.password").write_text("pw\n")
    (d / "mqtt.password").write_text("pw\n")
    return {
        "inventory": "inventory.toml",
        "api": {
            "listen": f"127.0.0.1:{free_port()}",
            "users": [
                {"name": "admin", "password_hash": hash_password("pw", 1000), "roles": ["TASK_VIEWER"]}
            ],
        },
        "store": {"url": "sqlite:///state/c.db"},
        "mqtt": {"url": "mqtt://127.0.0.1:1", "password_file": "mqtt.password"},
        "signing": {"private_key": "keys/command-signing.key", "agent_keys_dir": "keys/agents"},
        "cluster_sql": [{"cluster_id": 1, "password_file": "sys.password"}],
    }


def good_agent(d: Path) -> dict[str, Any]:
    signing.generate(d / "keys")
    return {
        "agent_id": "h1",
        "state_dir": "state",
        "controller_public_key": "keys/command-signing.pub",
        "mqtt": {"url": "mqtt://127.0.0.1:1"},
    }


def put(d: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for key in path:
        d = d.setdefault(key, {})
    if value is None:
        d.pop(last, None)
    else:
        d[last] = value


def setting(dotted: str, value: Any) -> Edit:
    return lambda _d, config: put(config, dotted, value)


def file(name: str, content: bytes | str, mode: int = 0o644) -> Edit:
    def edit(d: Path, _config: dict[str, Any]) -> None:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        path.chmod(mode)

    return edit


def inventory(data: dict[str, Any]) -> Edit:
    return file("inventory.toml", tomli_w.dumps(data))


def both(*edits: Edit) -> Edit:
    def edit(d: Path, config: dict[str, Any]) -> None:
        for e in edits:
            e(d, config)

    return edit


@dataclass(frozen=True)
class Case:
    daemon: str  # controller | agent
    name: str
    edit: Edit
    words: tuple[str, ...]  # what the one line names: the key, and what is wrong


BUSY = socket.socket()  # a port something listens on, for the whole module
BUSY.bind(("127.0.0.1", 0))
BUSY.listen()
BUSY_PORT = BUSY.getsockname()[1]
SHARED = good_inventory()
SHARED["clusters"].append(
    {"id": 2, "name": "d", "ob_cluster_id": 2, "servers": [{**SHARED["clusters"][0]["servers"][0], "id": 2}]}
)
C, A = "controller", "agent"
CASES = [
    Case(C, "unknown key", setting("bogus", 1), ("bogus", "Extra inputs")),
    Case(C, "toml syntax", file("controller.toml", "[api\n"), ("controller.toml",)),
    Case(C, "signal name", setting("stop.signal", "SIGFOO"), ("stop.signal", "SIGFOO")),
    Case(C, "unusable signal", setting("stop.signal", "SIGSTOP"), ("stop.signal",)),
    Case(C, "negative timeout", setting("stop.term_timeout", -1), ("stop.term_timeout",)),
    Case(C, "listen syntax", setting("api.listen", "nonsense"), ("api.listen", "HOST:PORT")),
    Case(C, "listen port range", setting("api.listen", "127.0.0.1:70000"), ("api.listen",)),
    Case(C, "listen port in use", setting("api.listen", f"127.0.0.1:{BUSY_PORT}"), ("api.listen", "in use")),
    Case(C, "listen host unknown", setting("api.listen", "no-such-host.invalid:8080"), ("api.listen",)),
    Case(
        C, "plain password", setting("api.users", [{"name": "a", "password_hash": "pw"}]), ("password_hash",)
    ),
    Case(
        C,
        "cheap hash",
        setting("api.users", [{"name": "a", "password_hash": "pbkdf2_sha256$10$s$h"}]),
        ("password_hash", "iterations"),
    ),
    Case(
        C,
        "unknown role",
        setting("api.users", [{"name": "a", "password_hash": hash_password("p", 1000), "roles": ["GOD"]}]),
        ("roles",),
    ),
    Case(C, "store scheme", setting("store.url", "mysql://db/x"), ("store.url", "sqlite:///")),
    Case(
        C,
        "store dir is a file",
        both(file("f", "x"), setting("store.url", "sqlite:///f/c.db")),
        ("store.url",),
    ),
    Case(
        C,
        "pg unreachable",
        setting("store.url", "postgresql://postgres@127.0.0.1:1/x"),
        ("store", "cannot open"),
    ),
    Case(
        C,
        "pg no database",
        setting("store.url", "postgresql://postgres@127.0.0.1:5432/obstop_no_such_db"),
        ("store", "does not exist"),
    ),
    Case(C, "mqtt scheme", setting("mqtt.url", "http://127.0.0.1"), ("mqtt.url",)),
    Case(C, "mqtt port", setting("mqtt.url", "mqtt://127.0.0.1:port"), ("mqtt.url",)),
    Case(C, "topic wildcard", setting("mqtt.topic_prefix", "a/+/b"), ("mqtt.topic_prefix",)),
    Case(
        C, "mqtt password file", setting("mqtt.password_file", "nope"), ("mqtt.password_file", "no such file")
    ),
    Case(
        C,
        "ca file garbage",
        both(file("ca.crt", "junk"), setting("mqtt.ca_file", "ca.crt")),
        ("mqtt.ca_file",),
    ),
    Case(C, "private key missing", setting("signing.private_key", "nope.key"), ("signing.private_key",)),
    Case(C, "private key garbage", file("keys/command-signing.key", "junk", 0o600), ("signing.private_key",)),
    Case(
        C,
        "private key is public",
        setting("signing.private_key", "keys/command-signing.pub"),
        ("signing.private_key",),
    ),
    Case(C, "no signing key", setting("signing.private_key", None), ("signing.private_key", "required")),
    Case(C, "no agent keys", setting("signing.agent_keys_dir", None), ("signing.agent_keys_dir", "required")),
    Case(C, "agent keys not a dir", setting("signing.agent_keys_dir", "sys.password"), ("agent_keys_dir",)),
    Case(C, "agent key garbage", file("keys/agents/h2.pub", "junk"), ("agent_keys_dir", "h2.pub")),
    Case(
        C,
        "sql password file",
        setting("cluster_sql", [{"cluster_id": 1, "password_file": "nope"}]),
        ("password_file",),
    ),
    Case(
        C,
        "sql cluster unknown",
        setting("cluster_sql", [{"cluster_id": 9}]),
        ("cluster_sql.0.cluster_id", "no cluster 9"),
    ),
    Case(C, "inventory missing", setting("inventory", "nope.toml"), ("inventory", "no such file")),
    Case(C, "inventory is a dir", setting("inventory", "keys"), ("inventory",)),
    Case(C, "inventory shared", inventory(SHARED), ("inventory", "cluster 1 server 1", "cluster 2 server 2")),
    Case(C, "inventory root home", inventory(good_inventory("/")), ("inventory", "home_path")),
    Case(C, "inventory newline", inventory(good_inventory("/a\nb")), ("inventory", "control characters")),
    Case(
        C,
        "ssh identity",
        setting(
            "agentless.ssh",
            [{"host": "h9", "address": "a", "user": "u", "identity": "i", "known_hosts": "k"}],
        ),
        ("agentless.ssh.0.identity",),
    ),
    Case(C, "via agent id", setting("agents.via", {"h9": "a/b"}), ("agents.via",)),
    Case(C, "log level", setting("log_level", "LOUD"), ("log_level",)),
    Case(C, "lease", setting("engine.lease_seconds", 0), ("engine.lease_seconds",)),
    Case(
        C, "login window", setting("api.failed_logins_window_seconds", 0), ("failed_logins_window_seconds",)
    ),
    Case(A, "unknown key", setting("bogus", 1), ("bogus",)),
    Case(A, "toml syntax", file("agent.toml", "agent_id = \n"), ("agent.toml",)),
    Case(A, "no agent id", setting("agent_id", None), ("agent_id", "Field required")),
    Case(A, "agent id", setting("agent_id", "a/b"), ("agent_id",)),
    Case(A, "agent id dots", setting("agent_id", ".."), ("agent_id",)),
    Case(
        A, "controller key missing", setting("controller_public_key", "nope.pub"), ("controller_public_key",)
    ),
    Case(A, "controller key garbage", file("keys/command-signing.pub", "junk"), ("controller_public_key",)),
    Case(
        A,
        "private key garbage",
        both(file("mine.key", "junk", 0o600), setting("private_key", "mine.key")),
        ("private_key",),
    ),
    Case(
        A,
        "private key readable by all",
        lambda d, _c: os.renames(*_pair(d)),
        ("private_key", "chmod 600"),
    ),
    Case(A, "state dir under a file", both(file("f", "x"), setting("state_dir", "f/state")), ("state_dir",)),
    Case(A, "mqtt url", setting("mqtt.url", "tcp:/nohost"), ("mqtt.url",)),
    Case(A, "topic prefix", setting("mqtt.topic_prefix", "#"), ("mqtt.topic_prefix",)),
    Case(A, "mqtt password file", setting("mqtt.password_file", "nope"), ("mqtt.password_file",)),
    Case(A, "ca file", both(file("ca.crt", "junk"), setting("mqtt.ca_file", "ca.crt")), ("mqtt.ca_file",)),
    Case(
        A,
        "ssh identity",
        setting("ssh", [{"host": "h9", "address": "a", "user": "u", "identity": "i", "known_hosts": "k"}]),
        ("ssh.0.identity",),
    ),
    Case(A, "clock skew", setting("clock_skew_seconds", -1), ("clock_skew_seconds",)),
    Case(A, "log level", setting("log_level", "LOUD"), ("log_level",)),
    Case(A, "concurrency", setting("max_concurrent_commands", 0), ("max_concurrent_commands",)),
]


def _pair(d: Path) -> tuple[Path, Path]:
    """A real agent key, made readable by everyone: refused (as ssh refuses such a key)."""
    signing.generate(d / "made", agent="h1")
    (d / "made" / "h1.key").chmod(0o644)
    return d / "made" / "h1.key", d / "state" / "h1.key"


def prepare(root: Path, i: int, case: Case) -> list[str]:
    d = root / f"case{i}"
    d.mkdir()
    if case.daemon == C:
        config = good_controller(d)
        (d / "inventory.toml").write_text(tomli_w.dumps(good_inventory()))
        name = "controller.toml"
    else:
        config = good_agent(d)
        name = "agent.toml"
    case.edit(d, config)
    if not (d / name).exists():
        (d / name).write_text(tomli_w.dumps(config))
    return [case.daemon, "--config", str(d / name)]


def run_cases(args: list[list[str]]) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSTOP_")}
    out = subprocess.run(
        [sys.executable, "-m", "tests.e2e.cli_cases"],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(out.stdout)
    return results


@pytest.mark.postgres
def test_every_bad_config_is_one_line_exit_2_and_no_traceback(tmp_path: Path) -> None:
    args = [prepare(tmp_path, i, case) for i, case in enumerate(CASES)]
    missing = [
        ["controller", "--config", str(tmp_path / "nowhere.toml")],
        ["agent", "--config", str(tmp_path / "nowhere.toml")],
    ]
    results = run_cases(args + missing)
    tracebacks = [r for r in results if r["exception"] or "Traceback" in r["stdout"] + r["stderr"]]
    assert tracebacks == [], tracebacks  # the count the issue asks for: 0
    for case, r in zip(
        CASES + [Case(C, "missing", setting("x", 1), ("no such file",))] * 2, results, strict=True
    ):
        where = f"{case.daemon} / {case.name}: {r}"
        assert r["exit_code"] == 2, where
        lines = r["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), where
        config = r["args"][2]
        assert config in lines[0], where  # names the file
        for w in case.words:
            assert w in lines[0], (w, where)
        assert r["stdout"] == "", where


@pytest.mark.parametrize(
    ("daemon", "edit", "words"),
    [
        ("controller", setting("stop.signal", "SIGFOO"), "stop.signal"),
        ("controller", setting("api.listen", f"127.0.0.1:{BUSY_PORT}"), "api.listen"),
        ("controller", setting("cluster_sql", [{"cluster_id": 1, "password_file": "nope"}]), "password_file"),
        ("agent", setting("controller_public_key", "nope.pub"), "controller_public_key"),
    ],
)
def test_the_daemon_process_says_it_in_one_line(tmp_path: Path, daemon: str, edit: Edit, words: str) -> None:
    args = prepare(tmp_path, 0, Case(daemon, "process", edit, (words,)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSTOP_")}
    res = subprocess.run(
        [sys.executable, "-m", "obstop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1 and words in res.stderr and "Traceback" not in res.stderr, res
    assert "listening" not in res.stdout + res.stderr
