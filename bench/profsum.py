"""Summarize py-spy collapsed stacks: where the busy time goes, by our own frames and by leaf.

A sample whose leaf is a thread or the event loop waiting (the source line at the leaf blocks in a
get/select/poll/acquire/wait) is idle and left out, so percentages are of busy samples.

    python -m bench.profsum FILE... [TOP]
"""

from __future__ import annotations

import linecache
import re
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

OURS = ("controller/", "agent/", "obstop/")
ENTRY = ("obstop/__main__.py", "obstop/cli/")  # in every sample of a daemon: says nothing
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+):(?P<line>\d+)\)$")
BLOCKING = re.compile(r"\.(get|select|poll|acquire|wait)\(|waiter\.acquire|_lock\.__enter__")


@cache
def _source(file: str, line: int) -> str:
    for base in sys.path:
        path = Path(base or ".", file)
        if path.is_file():
            return linecache.getline(str(path), line)
    return ""


def idle(leaf: str) -> bool:
    m = FRAME.match(leaf)
    return m is not None and BLOCKING.search(_source(m["file"], int(m["line"]))) is not None


def summarize(paths: list[Path], top: int = 25) -> dict[str, Any]:
    """Busy and idle samples over the files; the top frames of ours (inclusive) and leaves, each as
    [percent, frame]."""
    own: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    busy = idle_samples = 0
    for line in (x for path in paths for x in path.read_text().splitlines()):
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        n, frames = int(count), stack.split(";")
        if idle(frames[-1]):
            idle_samples += n
            continue
        busy += n
        leaf[frames[-1][:120]] += n
        for f in {f for f in frames if any(o in f for o in OURS) and not any(e in f for e in ENTRY)}:
            own[f[:120]] += n

    def pct(c: Counter[str]) -> list[tuple[float, str]]:
        return [(round(100 * n / busy, 1), f) for f, n in c.most_common(top)] if busy else []

    return {
        "files": [str(p) for p in paths],
        "busy_samples": busy,
        "idle_samples": idle_samples,
        "ours_inclusive": pct(own),
        "leaves": pct(leaf),
    }


def render(s: dict[str, Any]) -> str:
    lines = [f"{' '.join(s['files'])}: {s['busy_samples']} busy samples ({s['idle_samples']} idle left out)"]
    lines += ["-- inclusive, our frames --"] + [f"{p:5.1f}%  {f}" for p, f in s["ours_inclusive"]]
    lines += ["-- leaves --"] + [f"{p:5.1f}%  {f}" for p, f in s["leaves"]]
    return "\n".join(lines)


def main() -> None:
    args = sys.argv[1:]
    top = int(args.pop()) if args and args[-1].isdigit() else 25
    print(render(summarize([Path(a) for a in args], top)))


if __name__ == "__main__":
    main()
