"""State machines: one module each, a StrEnum of states and a TRANSITIONS table."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

S = TypeVar("S", bound=StrEnum)


class IllegalTransition(Exception):
    def __init__(self, what: str, current: StrEnum, wanted: StrEnum) -> None:
        super().__init__(f"{what} cannot go from {current} to {wanted}")
        self.current = current
        self.wanted = wanted


def check(what: str, table: dict[S, frozenset[S]], current: S, wanted: S) -> None:
    """Raise unless current -> wanted is in the table. Staying put is always allowed (re-runs)."""
    if wanted != current and wanted not in table.get(current, frozenset()):
        raise IllegalTransition(what, current, wanted)


def sources(table: dict[S, frozenset[S]], wanted: S) -> frozenset[S]:
    """The states from which wanted can be reached (for compare-and-set WHERE clauses)."""
    return frozenset(s for s, targets in table.items() if wanted in targets) | {wanted}
