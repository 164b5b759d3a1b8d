"""Plot stop time against the number of hosts: obstop against the local floor and the peers, from the side
by side (bench/results/sidebyside.json) into bench/results/stop-time.png (the README's figure).

    python -m bench.plot [--data FILE] [--out PNG]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"


def style(name: str) -> dict[str, Any]:
    """obstop bold, the floor dashed black, the peers thin."""
    if name.startswith("obstop"):
        return {"linewidth": 2.4, "marker": "o"}
    if "floor" in name:
        return {"linewidth": 1.6, "linestyle": "--", "color": "black", "marker": "s"}
    return {"linewidth": 1.2, "marker": "."}


def main() -> None:
    p = argparse.ArgumentParser(description="plot the side by side")
    p.add_argument("--data", type=Path, default=RESULTS / "sidebyside.json")
    p.add_argument("--out", type=Path, default=RESULTS / "stop-time.png")
    a = p.parse_args()
    data = json.loads(a.data.read_text())
    by = data["by_hosts"]
    if "methods" not in next(iter(by.values())):
        raise SystemExit(f"{a.data} is from the old side by side; run `python -m bench.sidebyside` again")
    hosts = sorted(int(n) for n in by)
    names: list[str] = []
    for n in hosts:
        names += [m for m in by[str(n)]["methods"] if m not in names]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for name in names:
        xs = [n for n in hosts if name in by[str(n)]["methods"]]
        ms = [by[str(n)]["methods"][name] for n in xs]
        ax.plot(xs, [m["median_s"] for m in ms], label=name, **style(name))
        ax.fill_between(xs, [m["min_s"] for m in ms], [m["max_s"] for m in ms], alpha=0.12)
    ax.set_xlabel("fake hosts (one observer each, its own sshd on 127.0.X.i:22)")
    ax.set_ylabel("stop time, s (median; band: every run)")
    ax.set_yscale("log")
    ax.set_xticks(hosts)
    ax.grid(True, which="both", alpha=0.3)
    shell = str(data.get("login_shell", "")).split(":")[0]
    ax.set_title(f"Stopping N observers on one 2-core machine ({shell} login shell)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out)
    print(a.out)


if __name__ == "__main__":
    main()
