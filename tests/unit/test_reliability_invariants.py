"""The fault trials' signal invariant is not vacuous: it counts a second SIGTERM for one command id, a
SIGTERM no command marked, and a signal sent after the controller saw its subtask run end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from reliability.invariants import signals
from reliability.world import Host

CMD = "obstop-abc-t1-s2-r1-0123"


def host(tmp_path: Path, sigterms: int, marks: list[tuple[str, str, float]]) -> Host:
    h = Host("h1", "127.0.0.1", "zone1", tmp_path)
    h.observer_log.parent.mkdir(parents=True)
    h.observer_log.write_text("[2026-11-30 03:00:00] [pid 42] received SIGTERM\n" * sigterms)
    h.journal.parent.mkdir(parents=True)
    with sqlite3.connect(h.journal) as db:
        db.execute(
            "CREATE TABLE commands (command_id TEXT, payload TEXT, received_at REAL, finished_at REAL)"
        )
        db.execute("CREATE TABLE marks (command_id TEXT, mark TEXT, at REAL)")
        db.executemany("INSERT INTO marks VALUES (?, ?, ?)", marks)
    return h


def test_one_marked_sigterm_in_time_is_fine(tmp_path: Path) -> None:
    assert signals(host(tmp_path, 1, [(CMD, "SIGTERM:42:1.5", 100.0)]), {(1, 2, 1): 100.2}) == []


def test_a_second_sigterm_for_one_command_id_counts(tmp_path: Path) -> None:
    (found,) = signals(host(tmp_path, 2, [(CMD, "SIGTERM:42:1.5", 100.0)]), {})
    assert "received SIGTERM 2 times for 1 command id(s)" in found


def test_a_sigterm_no_command_marked_counts(tmp_path: Path) -> None:
    (found,) = signals(host(tmp_path, 1, []), {})
    assert "for 0 command id(s)" in found


def test_a_signal_after_its_subtask_run_ended_counts(tmp_path: Path) -> None:
    (found,) = signals(host(tmp_path, 1, [(CMD, "SIGTERM:42:1.5", 107.0)]), {(1, 2, 1): 100.0})
    assert "7.0s after its subtask run ended" in found


FRAME = '  File "x.py", line 1, in f\n    f()\n'
CANCELLED = "Traceback (most recent call last):\n" + FRAME + "asyncio.exceptions.CancelledError\n"


def known_tracebacks(text: str) -> int:
    from reliability.invariants import CANCELLED_REQUEST

    return sum(m.group(0).count("Traceback (most") for m in CANCELLED_REQUEST.finditer(text))


def test_a_request_cancelled_at_the_exit_is_known_alone_or_chained_to_the_store_loss() -> None:
    alone = "Exception in ASGI application\n" + CANCELLED
    chained = (
        "Exception in ASGI application\nTraceback (most recent call last):\n" + FRAME
        + "obstop.controller.errors.StoreLost: the store stopped answering\n\n"
        "During handling of the above exception, another exception occurred:\n\n" + CANCELLED
    )  # fmt: skip
    assert known_tracebacks(alone) == 1 and known_tracebacks(chained) == 2
    other = chained.replace("obstop.controller.errors.StoreLost", "KeyError")  # a real bug stays counted
    assert known_tracebacks(other) == 0
