"""What an agent says, tamed before it reaches the controller's logs and the operator's terminal: its text
cleaned and bounded, its progress lines rate-limited per command, and what an answer to a command must
match (an agent is trusted with nothing it did not sign, and even then not with the log's size)."""

from __future__ import annotations

import asyncio
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from obstop.agent.protocol import AnyEvent, ProbeReport

MAX_TEXT = 300  # characters of an agent's text (progress, reasons) that reach a log
PROGRESS_BURST, PROGRESS_PER_SECOND, PROGRESS_TOTAL = 10, 2.0, 100  # per command


def clean(text: str, limit: int = MAX_TEXT) -> str:
    """An agent's text, fit for a log line and a terminal: no control or format characters, bounded."""
    out = "".join("?" if unicodedata.category(c) in ("Cc", "Cf") else c for c in text[: limit + 1])
    return out if len(out) <= limit else out[:limit] + "..."


@dataclass
class Waiter:
    """A command sent and not yet answered: what an answer must match."""

    agent_id: str
    digest: str
    issued_at: datetime
    events: asyncio.Queue[AnyEvent] = field(default_factory=asyncio.Queue)
    progress: int = 0
    tokens: float = PROGRESS_BURST
    refilled: float = field(default_factory=time.monotonic)

    def take_progress(self) -> bool:
        """Whether one more progress line may be logged (a hostile agent cannot flood the log)."""
        now = time.monotonic()
        self.tokens = min(PROGRESS_BURST, self.tokens + (now - self.refilled) * PROGRESS_PER_SECOND)
        self.refilled = now
        self.progress += 1
        if self.tokens < 1 or self.progress > PROGRESS_TOTAL:
            return False
        self.tokens -= 1
        return True


def clean_probe(report: ProbeReport) -> ProbeReport:
    return report.model_copy(update={"reason": report.reason and clean(report.reason)})
