"""Plot stop time against the number of hosts for each system (bench/results/stop-time.png).

python -m bench.plot
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    data = json.loads((RESULTS / "sidebyside.json").read_text())["by_hosts"]
    hosts = sorted(int(n) for n in data)
    systems = list(data[str(hosts[0])])
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for name in systems:
        ys, lows, highs = [], [], []
        for n in hosts:
            s = data[str(n)][name]
            runs = [r["seconds"] for r in s["runs"]]
            ys.append(s["warm_s"]["median"] if s["warm_s"] else s["cold_s"])
            lows.append(min(runs))
            highs.append(max(runs))
        ax.plot(hosts, ys, marker="o", label=name)
        ax.fill_between(hosts, lows, highs, alpha=0.15)
    ax.set_xlabel("fake hosts (one observer each)")
    ax.set_ylabel("stop time, s (median of warm runs; band: all runs)")
    ax.set_yscale("log")
    ax.set_xticks(hosts)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("Stopping N observers on one 2-core machine (loopback)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "stop-time.png")
    print(RESULTS / "stop-time.png")


if __name__ == "__main__":
    main()
