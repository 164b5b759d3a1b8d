"""Summarize py-spy collapsed stacks: where the time goes, by our own frames and by leaf."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

OURS = ("controller/", "agent/", "obstop/")


def main(path: str, top: int = 25) -> None:
    own: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf[frames[-1][:120]] += n
        mine = [f for f in frames if any(o in f for o in OURS)]
        for f in set(mine):
            own[f[:120]] += n
    print(f"samples: {total}")
    print("\n-- inclusive, our frames --")
    for f, n in own.most_common(top):
        print(f"{100 * n / total:5.1f}%  {f}")
    print("\n-- leaves --")
    for f, n in leaf.most_common(top):
        print(f"{100 * n / total:5.1f}%  {f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
