"""What the benchmarks share: a Mosquitto of their own, the controller as a process, RSS sampling, the fake
hosts' restart between runs and the end-state check every method is held to."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from obstop.fakes import hosts as fakehosts
from obstop.fakes.install import FakeObserver, start
from obstop.fakes.net import bindable, free_port


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@dataclass(frozen=True)
class Broker:
    url: str
    pid: int


@contextmanager
def mosquitto(root: Path) -> Iterator[Broker]:
    """A Mosquitto for one benchmark; queues sized for thousands of in-flight QoS 1 messages."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = root / "mosquitto.conf"
    user = f"user {psutil.Process().username()}\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages 1000000\nmax_inflight_messages 1000\n{user}"
    )
    proc = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield Broker(f"mqtt://127.0.0.1:{port}", proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


class RssSampler:
    """Peak resident memory of a process, sampled every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def controller(config: Path, log: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "obstop", "controller", "--config", str(config)], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"controller did not start; see {log}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def zones_for(n: int) -> tuple[int, int]:
    """Zones and servers per zone for n hosts: 3 zones when n allows, else 2, else 1."""
    zones = 3 if n % 3 == 0 else (2 if n % 2 == 0 else 1)
    return zones, n // zones


def host_block(count: int, ports: tuple[int, ...] = (22, 2881, 2882)) -> str:
    """The first 127.0.X.11 (X >= 1, as the issue measured: 127.0.1.i) from which `count` addresses have all
    of `ports` free; port 22 for each host's own sshd."""
    for third in range(1, 250):
        ips = [f"127.0.{third}.{11 + i}" for i in range(count)]
        if all(bindable(ip, p) for ip in ips for p in ports):
            return ips[0]
    raise RuntimeError(f"no free block of {count} loopback addresses with ports {ports} free")


def restart_observers(fleet: fakehosts.Fleet, directory: Path) -> None:
    """Start again every fake observer that is not running (after a stop)."""
    for h in fleet.hosts:
        try:
            if psutil.Process(h.observer_pid).status() != psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            pass
        fake = FakeObserver(Path(h.home), h.ip, zone=h.zone, cluster_dir=directory / "cluster")
        h.observer_pid = start(fake)
    fleet.save()


def port_free(ip: str, port: int) -> bool:
    """Free for a restarted observer: nothing listens (SO_REUSEADDR, as a server sets, ignores TIME_WAIT)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


def end_state(fleet: fakehosts.Fleet) -> dict[str, int | bool]:
    """What every method is held to after a stop: every observer gone, both ports free, pid file removed."""
    alive = ports = pidfiles = 0
    for h in fleet.hosts:
        with contextlib.suppress(psutil.NoSuchProcess):
            alive += psutil.Process(h.observer_pid).status() != psutil.STATUS_ZOMBIE
        ports += sum(not port_free(h.ip, port) for port in (2881, 2882))
        pidfiles += (Path(h.home) / "run" / "observer.pid").exists()
    return {
        "alive": alive,
        "ports_held": ports,
        "pid_files_left": pidfiles,
        "clean": alive == ports == pidfiles == 0,
    }
