"""Fixtures of the end-to-end tier: daemons as processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.controller_process import ControllerProcess


@pytest.fixture
def controllers(tmp_path: Path) -> Iterator[Callable[..., ControllerProcess]]:
    """controllers(config, env=None, ca_file=None): a controller process logging to tmp_path/controller.log; none is
    left running after the test."""
    made: list[ControllerProcess] = []

    def make(
        config: Path, env: dict[str, str] | None = None, ca_file: Path | None = None
    ) -> ControllerProcess:
        made.append(ControllerProcess(config, tmp_path / "controller.log", env=env, ca_file=ca_file))
        return made[-1]

    yield make
    for ctl in made:
        ctl.close()
