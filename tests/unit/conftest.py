"""The unit tier is pure: while one of its tests runs, starting a process or opening a network connection
fails the test (an audit hook, so nothing needs mocking). Files under tmp_path are fine."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

FORBIDDEN = {
    "subprocess.Popen",
    "os.fork",
    "os.forkpty",
    "os.posix_spawn",
    "os.exec",
    "socket.connect",
    "socket.bind",
}
_active = False


def _guard(event: str, args: tuple[Any, ...]) -> None:
    # only the test's own thread: a thread another tier's test left behind is not this test's doing
    if _active and event in FORBIDDEN and threading.current_thread() is threading.main_thread():
        raise RuntimeError(f"a unit test may not do {event} {args[:2]!r}: it belongs in tests/integration")


sys.addaudithook(_guard)


@pytest.fixture(autouse=True)
def pure() -> Iterator[None]:
    global _active
    _active = True
    try:
        yield
    finally:
        _active = False
