"""The fault trials' CI subset: `python -m reliability` (as a process, as an operator runs it) once per R
case, with a fixed span instead of a measured one; each must end with no invariant violated and no
unexpected outcome. The long counts are in reliability/RESULTS.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "R1-sqlite": ["--only", "R1", "--store", "sqlite"],
    "R1-postgres": pytest.param(["--only", "R1", "--store", "postgres"], marks=pytest.mark.postgres),
    "R2": ["--only", "R2"],
    "R3": ["--only", "R3", "--variant", "mosquitto"],
    "R3-nats": ["--only", "R3", "--variant", "nats-node"],
    "R4": ["--only", "R4"],
    "R5-sqlite": ["--only", "R5", "--variant", "sqlite-locked"],
    "R5-postgres": pytest.param(
        ["--only", "R5", "--variant", "postgres-restarted"], marks=pytest.mark.postgres
    ),
    "R6-ahead": ["--only", "R6", "--variant", "+10m"],
    "R6-behind": ["--only", "R6", "--variant=-10m"],  # = : argparse would take -10m for an option
}


@pytest.mark.mqtt
@pytest.mark.timeout(300)
@pytest.mark.parametrize("args", list(CASES.values()), ids=list(CASES))
def test_each_fault_once_violates_nothing(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "trials.json"
    run = subprocess.run(
        [sys.executable, "-m", "reliability", "--trials", "1", "--span", "1.5", "--seed", "ci",
         "--dir", str(tmp_path / "worlds"), "--json", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert out.exists(), run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    if report["skipped"] and not report["trials"]:
        pytest.skip("; ".join(f"{k}: {why}" for k, why in report["skipped"].items()))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert report["trials"], report
    for trial in report["trials"]:
        assert trial["violations"] == [], trial
        assert trial["outcome"] in ("completed", "failed clearly", "retried through"), trial
