"""A real Mosquitto on a free loopback port with its own config and log."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psutil

from obstop.fakes.net import free_port
from tests.support.processes import wait_port


class Mosquitto:
    def __init__(self, root: Path, extra: str = "", anonymous: bool = True) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"per_listener_settings false\nlistener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\npersistence false\n"
            f"log_dest file {root}/mosquitto.log\n{extra}"
            # as root, mosquitto would switch to user mosquitto, who cannot read the test's temp dirs
            + (f"user {psutil.Process().username()}\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
