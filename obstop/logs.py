"""One terse log line per event, to stderr (journald adds its own timestamps under systemd)."""

from __future__ import annotations

import logging
import os
import sys


def setup(level: str | None = None) -> None:
    level = (level or os.environ.get("OBSTOP_LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("asyncssh", "aiosqlite", "amqtt", "transitions", "passlib", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
