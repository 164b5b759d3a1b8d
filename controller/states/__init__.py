"""The state machines of cluster, zone, server, task and subtask: the only source of legal moves.

Each module holds one machine: a StrEnum of states and its TRANSITIONS table, wrapped in a `Machine`.
Every status change in the store goes through one: a set-based SQL move declares its edge with
`Machine.edge()` (checked against the table when the module is imported), a move of one row is checked
with `Machine.check()`. This package imports nothing of the project; anything in the controller may use it.
"""

from obstop.controller.states.machine import IllegalTransition, Machine

__all__ = ["IllegalTransition", "Machine"]
