"""A task's DAG as the CLI prints it: Graphviz dot, Mermaid, JSON and the table."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from obstop import render

TASK: dict[str, Any] = {
    "id": 7,
    "name": "Stop OB cluster",
    "status": "FAILED",
    "cluster": {"id": 1, "name": "obcluster", "obClusterId": 22},
    "tasks": [
        {
            "id": 1,
            "name": "Prepare stop cluster",
            "status": "SUCCESSFUL",
            "upstreams": [],
            "runTime": 1,
            "context": "Context(parallelIdx=-1, stringMap={}, listMap={})",
            "startTime": "2026-01-01T10:00:00.000+00:00",
            "finishTime": "2026-01-01T10:00:00.250+00:00",
        },
        {
            "id": 2,
            "name": "Prepare stop OB zone",
            "status": "SUCCESSFUL",
            "upstreams": [1],
            "runTime": 1,
            "context": "Context(parallelIdx=-1, stringMap={zone_name=zone1}, listMap={})",
            "startTime": "2026-01-01T10:00:00.250+00:00",
            "finishTime": "2026-01-01T10:00:12.250+00:00",
        },
        {
            "id": 3,
            "name": "Stop observer process",
            "status": "FAILED",
            "upstreams": [2],
            "runTime": 2,
            "context": "Context(parallelIdx=0, stringMap={server_id=100, zone_name=zone1}, listMap={})",
            "startTime": None,
            "finishTime": None,
        },
    ],
}


def test_dot() -> None:
    lines = render.dot(TASK).splitlines()
    assert lines[0] == 'digraph "task 7" {' and lines[-1] == "}"
    assert '  s1 [label="Prepare stop cluster\\nSUCCESSFUL"];' in lines  # no empty target line
    assert '  s2 [label="Prepare stop OB zone\\nzone1\\nSUCCESSFUL"];' in lines
    assert '  s3 [label="Stop observer process\\nserver 100 (zone1)\\nFAILED"];' in lines
    assert [x.strip() for x in lines if "->" in x] == ["s1 -> s2;", "s2 -> s3;"]


def test_mermaid() -> None:
    lines = render.mermaid(TASK).splitlines()
    assert lines[0] == "flowchart LR"
    assert '  s1["Prepare stop cluster SUCCESSFUL"]' in lines
    assert '  s3["Stop observer process server 100 (zone1) FAILED"]' in lines
    assert [x.strip() for x in lines if "-->" in x] == ["s1 --> s2", "s2 --> s3"]


def test_json_is_the_task_itself() -> None:
    assert json.loads(render.as_json(TASK)) == TASK


def test_table_with_the_failed_subtasks_log() -> None:
    console = Console(width=200, record=True, color_system=None)
    log = "\n".join(f"line {i}" for i in range(20))
    console.print(render.table(TASK, {3: log}))
    text = console.export_text()
    assert "task 7 · Stop OB cluster · cluster obcluster · FAILED" in text
    rows = {line.split("│")[2].strip(): line for line in text.splitlines() if line.count("│") > 5}
    assert "server 100 (zone1)" in rows["Stop observer process"] and "FAILED" in rows["Stop observer process"]
    assert "250 ms" in rows["Prepare stop cluster"] and "12.0 s" in rows["Prepare stop OB zone"]
    assert "subtask 3 failed; last lines of its log:" in text
    assert "line 19" in text and "line 12" in text and "line 11" not in text  # the last 8 lines
