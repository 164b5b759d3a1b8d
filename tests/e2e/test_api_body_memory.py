"""The controller, as a real process, reads no body it has not authenticated and no body over 64 KB: four
10 MB bodies at once (unauthenticated, or authenticated but over the cap, with and without
Content-Length) are answered 401 or 413 and its memory stays where it was."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from obstop.fakes.net import free_port
from tests.support.controller import write_config
from tests.support.fakes import Fakes, start_cluster
from tests.support.processes import wait_port

TEN_MB = 10 * 1024 * 1024


@pytest.fixture
def controller(tmp_path: Path, fakes: Fakes) -> Iterator[tuple[int, int]]:
    port = free_port()
    cluster = start_cluster(fakes, zones=1, per_zone=1)
    config = write_config(
        tmp_path, cluster, f"sqlite:///{tmp_path}/c.db", api={"listen": f"127.0.0.1:{port}"}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSTOP_")}
    with open(tmp_path / "controller.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "obstop", "controller", "--config", str(config)],
            stdout=log,
            stderr=log,
            env=env,
        )
    try:
        wait_port("127.0.0.1", port, timeout=30)
        yield proc.pid, port
    finally:
        proc.terminate()
        proc.wait(30)


def send(port: int, headers: list[str], chunked: bool) -> int:
    """Send a 10 MB body as fast as the server takes it; the status it answers (0: none)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        head = ["POST /api/v2/ob/clusters/1/stop HTTP/1.1", "Host: obstop", *headers]
        head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {TEN_MB}")
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        chunk = b"[" * 65536
        framed = (b"%x\r\n" % len(chunk)) + chunk + b"\r\n" if chunked else chunk
        try:
            for _ in range(TEN_MB // len(chunk)):
                s.sendall(framed)
        except OSError:
            pass  # the server answered and closed before the body ended: what it should do
        answer = s.recv(4096)
        return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else 0
    except OSError:
        return 0
    finally:
        s.close()


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_large_bodies_are_never_read(controller: tuple[int, int]) -> None:
    pid, port = controller
    admin = "Authorization: Basic " + base64.b64encode(b"admin:admin-pw").decode()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(3):  # warm: imports, first requests, the credentials cache
            http.get("/api/status")
            http.get("/api/v2/ob/clusters", auth=("admin", "admin-pw"))
    before = rss(pid)

    statuses: list[int] = []
    cases = [([], False), ([], True), ([admin], False), ([admin], True)]
    threads = [threading.Thread(target=lambda h=h, c=c: statuses.append(send(port, h, c))) for h, c in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    grown = rss(pid) - before
    assert sorted(statuses) == [401, 401, 413, 413], statuses
    assert grown < 20 * 1024 * 1024, f"controller RSS grew {grown / 1e6:.1f} MB"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:  # and it still serves
        assert http.get("/api/v2/ob/clusters", auth=("admin", "admin-pw")).status_code == 200
