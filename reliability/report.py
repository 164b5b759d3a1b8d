"""`python -m reliability.report A.json B.json ...`: one table of several runs' trials (what
reliability/RESULTS.md shows), and each violation or unexpected outcome with its trial."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reliability.runner import Result, table


def main(paths: list[str]) -> int:
    results: list[Result] = []
    skipped: dict[str, str] = {}
    for path in paths:
        report = json.loads(Path(path).read_text())
        results += [Result(**t) for t in report["trials"]]
        skipped.update(report["skipped"])
    print(table(results, skipped))
    for r in results:
        if r.bad:
            print(f"- {r.scenario} {r.variant} #{r.trial}: {r.outcome} {r.detail} {'; '.join(r.violations)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
