"""A command's cancel, shared by the stop and start procedures (agent and agentless alike).

The cancel is journalled before it is acted on, under the same lock that every act of the command
(a signal, a launch) holds from its decision to its end: so an act either happened before the cancel
was journalled, or never happens. A command resumed after a restart starts from the journal's word.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

CANCEL_MARK = "CANCEL"


class Cancelled(Exception):
    """The command was cancelled before this act: it is not done."""


class CancelToken:
    def __init__(self, cancelled: bool = False) -> None:
        self._lock = asyncio.Lock()
        self._cancelled = cancelled

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    async def cancel(self, journal: Callable[[], Awaitable[object]] | None = None) -> None:
        """Journal the cancel (waiting for an act in progress to end), then refuse every later act."""
        async with self._lock:
            if not self._cancelled and journal is not None:
                await journal()
            self._cancelled = True

    @contextlib.asynccontextmanager
    async def acting(self) -> AsyncIterator[None]:
        """Hold while an act is decided and done; raises Cancelled if the command was cancelled first."""
        async with self._lock:
            if self._cancelled:
                raise Cancelled
            yield


@contextlib.asynccontextmanager
async def acting(token: CancelToken | None) -> AsyncIterator[None]:
    if token is None:
        yield
        return
    async with token.acting():
        yield


async def to_the_end(aw: Awaitable[T]) -> T:
    """Await aw even if we are cancelled meanwhile (then re-raise): an act once begun is finished, so
    the lock of `acting` is not released while, say, a signal is still on its way."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
