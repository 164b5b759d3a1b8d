"""One state machine: its table of legal moves, and the checks every move goes through."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Generic, TypeVar

S = TypeVar("S", bound=StrEnum)


class IllegalTransition(Exception):
    def __init__(self, what: str, current: StrEnum | str, wanted: StrEnum | str) -> None:
        super().__init__(f"{what} cannot go from {current} to {wanted}")
        self.current = current
        self.wanted = wanted


class Machine(Generic[S]):
    """A table of moves: `transitions[a]` is every state a may move to."""

    def __init__(self, name: str, states: type[S], transitions: Mapping[S, frozenset[S]]) -> None:
        missing = set(states) - set(transitions)
        if missing:
            raise ValueError(f"{name}: no row for {sorted(missing)}")
        self.name = name
        self.states = states
        self.transitions = dict(transitions)

    def allows(self, current: S, wanted: S) -> bool:
        return wanted in self.transitions[current]

    def check(self, current: S | str, wanted: S | str, what: str | None = None) -> None:
        """Raise unless current -> wanted is a move of the table. Staying put is no move: always allowed."""
        a, b = self.states(current), self.states(wanted)
        if a != b and not self.allows(a, b):
            raise IllegalTransition(what or self.name, a, b)

    def edge(self, current: S, wanted: S) -> tuple[S, S]:
        """Declare a move that code makes (set-based, in SQL): raises at once if the table lacks it."""
        if not self.allows(current, wanted):
            raise IllegalTransition(self.name, current, wanted)
        return current, wanted

    def sources(self, wanted: S) -> frozenset[S]:
        """The states from which wanted may be reached (for compare-and-set WHERE clauses)."""
        return frozenset(s for s, targets in self.transitions.items() if wanted in targets)

    def terminal(self) -> frozenset[S]:
        return frozenset(s for s, targets in self.transitions.items() if not targets)
