"""`python -m reliability --trials N [--only R1 R3] [--store sqlite|postgres] [--json out]`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from reliability.runner import Plan, run, table
from reliability.scenarios import SCENARIOS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    p.add_argument("--trials", type=int, default=1, help="trials per scenario and variant")
    p.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=[], metavar="R", help="R1..R6")
    p.add_argument("--store", nargs="+", choices=["sqlite", "postgres"], help="R1's stores (default both)")
    p.add_argument("--variant", nargs="+", help="only these variants (sqlite-locked, +10m, netns...)")
    p.add_argument("--json", type=Path, help="write every trial and the table here")
    p.add_argument("--dir", type=Path, help="where the trials' worlds live (default: a new temp dir)")
    p.add_argument("--seed", default=str(int(time.time())), help="the random moments' seed")
    p.add_argument("--span", type=float, help="the stop's span in seconds (default: measured per scenario)")
    p.add_argument("--keep", action="store_true", help="keep every trial's directory (default: failed ones)")
    args = p.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="obstop-reliability-"))
    root.mkdir(parents=True, exist_ok=True)
    plan = Plan(args.trials, args.only, args.store, root, args.seed, args.span, args.keep, args.variant)
    began = time.time()
    results, skipped = run(plan)
    text = table(results, skipped)
    print(text)
    bad = [r for r in results if r.bad]
    for r in bad:
        print(f"{r.scenario} {r.variant} #{r.trial}: {r.outcome} {r.detail} {r.violations}", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seed": args.seed,
                    "started": began,
                    "seconds": round(time.time() - began),
                    "trials": [asdict(r) for r in results],
                    "skipped": skipped,
                    "table": text,
                },
                indent=1,
            )
        )
    print(f"{len(results)} trials, {len(bad)} with a violation or an unexpected outcome; worlds in {root}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
