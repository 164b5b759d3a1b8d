"""Every command that talks to the API takes the same connection options, so a TLS deployment works with
all of them (zone and server commands once lacked --ca-file)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from obstop.cli import app

API_COMMANDS = [
    ["stop", "1"],
    ["start", "1"],
    ["zone", "stop", "1", "z1"],
    ["zone", "start", "1", "z1"],
    ["server", "stop", "1", "3"],
    ["server", "start", "1", "3"],
    ["task", "list"],
    ["task", "show", "1"],
    ["task", "log", "1"],
    ["task", "retry", "1"],
    ["task", "rollback", "1"],
    ["task", "skip", "1", "2"],
    ["task", "cancel", "1", "2"],
    ["audit"],
]


@pytest.mark.parametrize("command", API_COMMANDS, ids=" ".join)
def test_each_api_command_takes_the_ca_file(command: list[str]) -> None:
    result = CliRunner().invoke(
        app, [*command, "--url", "https://127.0.0.1:9", "--ca-file", "/nonexistent/ca.pem"]
    )
    assert result.exit_code == 2, result.output
    assert "CA file /nonexistent/ca.pem: no such file" in result.output
