"""README's exit-code table of the ops commands is the one the code uses, and each API failure maps to it."""

from __future__ import annotations

import re
from pathlib import Path

from obstop import client
from obstop.client import ApiError, Unreachable, UsageError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_matches_the_code() -> None:
    text = README.read_text()
    table = text[text.index("| exit code | meaning |") :].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^\| (\d) \| (.+?) \|$", table, re.M))
    assert set(rows) == {"0", "1", "2", "3", "4"}
    assert client.EXIT_OK == 0 and "success" in rows["0"]
    assert client.EXIT_FAILED == 1 and "failed" in rows["1"] and "refused" in rows["1"]
    assert client.EXIT_USAGE == 2 and "usage" in rows["2"] and "configuration" in rows["2"]
    assert client.EXIT_UNREACHABLE == 3 and "reached" in rows["3"]
    assert client.EXIT_AUTH == 4 and "authentication" in rows["4"] and "permission" in rows["4"]


def test_each_api_failure_has_its_code() -> None:
    assert ApiError(401, "x", 30004).exit_code == 4 and ApiError(403, "x", 30014).exit_code == 4
    assert ApiError(400, "x", 20003).exit_code == 1 and ApiError(400, "x", 20004).exit_code == 1
    assert ApiError(404, "x", 20000).exit_code == 1 and ApiError(409, "x", 50002).exit_code == 1
    assert ApiError(400, "x", 10001).exit_code == 2 and ApiError(500, "x", 10010).exit_code == 1
    assert Unreachable("x").exit_code == 3 and UsageError("x").exit_code == 2
    assert "HTTP 0" not in str(Unreachable("cannot reach"))
