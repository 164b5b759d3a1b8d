"""Logs for both daemons, through structlog: one JSON object per line when stderr is not a terminal (what
journald, Loki, Elasticsearch or Vector parse as is), human lines on a terminal.

Every record, from structlog or from the standard `logging` calls all over the code, carries what is
bound in its context: `traceId` while the API answers a request, `taskId` and `subtaskId` while the
engine runs a subtask (structlog's contextvars: each asyncio task has its own). JSON keys: `timestamp`
(ISO-8601, UTC), `level`, `logger`, `message`, then the bound ids; an exception comes as `exception`.
`OBSTOP_LOG_FORMAT=json|console` overrides the choice.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import Processor

NOISY = ("asyncssh", "aiosqlite", "amqtt", "transitions", "passlib", "uvicorn.error")


def _dumps(value: Any, **_kw: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def wants_json(stream: TextIO) -> bool:
    chosen = os.environ.get("OBSTOP_LOG_FORMAT", "").lower()
    if chosen in ("json", "console"):
        return chosen == "json"
    isatty = getattr(stream, "isatty", None)
    return not (isatty is not None and isatty())


def setup(level: str | None = None, stream: TextIO | None = None) -> None:
    level = (level or os.environ.get("OBSTOP_LOG_LEVEL") or "INFO").upper()
    out = stream or sys.stderr
    as_json = wants_json(out)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if as_json:
        finish: list[Processor] = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
        ]
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    else:
        finish = []
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
