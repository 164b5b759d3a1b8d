"""The agent speaks systemd's notify protocol: READY once its MQTT session is up, WATCHDOG pings only
after the broker acknowledged a publish, STOPPING on SIGTERM, then a clean exit. The test plays systemd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import tomli_w

from obstop.agent import signing
from tests.support.mosquitto import Mosquitto
from tests.support.processes import obstop_argv


def test_ready_watchdog_and_clean_stop(tmp_path: Path, broker: Mosquitto) -> None:
    signing.generate(tmp_path / "keys")
    config = tmp_path / "agent.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "agent_id": "h1",
                "state_dir": str(tmp_path / "state"),
                "controller_public_key": str(tmp_path / "keys" / signing.PUBLIC_NAME),
                "mqtt": {"url": broker.url},
            }
        )
    )
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(20)
    proc = subprocess.Popen(
        obstop_argv("agent", "--config", str(config)),
        env={**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "200000"},
    )
    try:
        # WATCHDOG_PID is unset: the pings are for the agent process itself
        seen = [sock.recv(256).decode() for _ in range(3)]
        assert seen[0] == "READY=1"
        assert seen[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        proc.send_signal(signal.SIGTERM)
        while (msg := sock.recv(256).decode()) == "WATCHDOG=1":
            pass
        assert msg == "STOPPING=1"
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        sock.close()
