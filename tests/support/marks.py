"""A command's journal of marks, in memory (what the agent's journal or the controller's store keeps), for
tests that drive the stop and start procedures directly."""

from __future__ import annotations


class Marks:
    def __init__(self, *marks: str) -> None:
        self.recorded = list(marks)

    async def record(self, mark: str) -> bool:
        """True if the mark was there already (an earlier attempt recorded it)."""
        if mark in self.recorded:
            return True
        self.recorded.append(mark)
        return False

    async def marks(self) -> list[str]:
        return list(self.recorded)
