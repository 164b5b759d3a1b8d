"""Side by side on the same fake hosts, in one run: obstop through agents, obstop agentless over SSH, a bare
asyncssh script (as a process and in-process), Ansible ad-hoc (forks=30), an OBD-style serial SSH loop, and
the local no-network floor.

Each fake host is a fake observer, an agent, and its own OpenSSH sshd on the host's own loopback address
(127.0.X.i:22). By default the sshds' sessions skip root's heavy ~/.bashrc (a light login shell, as on a
typical server: bench/sshfleet.py); `--heavy-rc` runs it, for the second, labelled table. Runs go round
robin (every method once, then again), each on freshly started observers, and every run is checked the
same way: every observer gone, both ports free, pid file removed. Run 0 is "cold" (Ansible has no
ControlPersist connection yet), the others "warm". CPU seconds per process group are in every run.

    python -m bench.sidebyside --hosts 1 10 30 --runs 3 [--ansible /tmp/ansible-venv/bin/ansible]
                               [--heavy-rc] [--methods agents floor ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import methods, sshfleet
from bench.common import Broker, end_state, host_block, mosquitto, restart_observers, summary, zones_for
from obstop.fakes import hosts as fakehosts

AGENTS = "obstop via agents"
NAMES = {
    "agents": AGENTS,
    "agentless": "obstop agentless over SSH",
    "bare": "bare asyncssh, parallel (process: interpreter start included)",
    "bare-inproc": "bare asyncssh, parallel (in-process)",
    "ansible": "Ansible ad-hoc, forks=30",
    "serial": "OBD-style serial SSH",
    "floor": "local, no network: SIGTERM all, poll /proc (the floor)",
}


def build(key: str, s: methods.Setup, ansible: str | None) -> methods.Run:
    if key == "ansible":
        assert ansible is not None
        return methods.ansible(s, ansible)
    return {
        "agents": methods.via_agents,
        "agentless": methods.agentless_ssh,
        "bare": methods.bare_process,
        "bare-inproc": methods.bare_inprocess,
        "serial": methods.serial_ssh,
        "floor": methods.local_floor,
    }[key](s)


def run_fleet(
    n: int, runs: int, work: Path, broker: Broker, keys: list[str], heavy_rc: bool, ansible: str | None
) -> dict[str, Any]:
    first = host_block(n)
    ips = [str(ipaddress.IPv4Address(first) + i) for i in range(n)]
    d = work / f"fleet-{n}"
    ssh = sshfleet.start(work / f"ssh-{n}", ips, heavy_rc)
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    try:
        login = sshfleet.login_check(ssh, ips[0])
        print(json.dumps({"hosts": n, "login": login}), flush=True)
        zones, per_zone = zones_for(n)
        fleet = fakehosts.up(d, zones=zones, servers_per_zone=per_zone, broker=broker.url, first_ip=first)
        try:
            setup = methods.Setup(fleet, d, ssh, broker)
            built = {k: build(k, setup, ansible) for k in keys}
            for i in range(runs):
                for k in keys:
                    restart_observers(fleet, d)
                    row = built[k](i) | end_state(fleet)
                    rows[k].append(row)
                    brief = {x: v for x, v in row.items() if x != "timeline"}
                    print(json.dumps({"hosts": n, "method": NAMES[k], "run": i, **brief}), flush=True)
        finally:
            fakehosts.down(d)
    finally:
        ssh.stop()
    out = {NAMES[k]: summarize(rows[k]) for k in keys}
    bare = NAMES["bare-inproc"]
    if bare in out:  # issue 12's agentless target: run for run against the bare script in-process
        for m in out.values():
            m["ratio_to_bare_inprocess"] = m["median_s"] / out[bare]["median_s"]
            m["ratio_to_bare_inprocess_by_run"] = [
                r["seconds"] / b["seconds"] for r, b in zip(m["runs"], out[bare]["runs"], strict=False)
            ]
    if AGENTS in out:
        base = out[AGENTS]
        for m in out.values():
            m["ratio_to_obstop_agents"] = m["median_s"] / base["median_s"]
            m["ratio_to_obstop_agents_cold"] = m["cold_s"] / base["cold_s"]
            if m["warm_s"] and base["warm_s"]:
                m["ratio_to_obstop_agents_warm"] = m["warm_s"]["median"] / base["warm_s"]["median"]
    return {"login": login, "methods": out}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    secs = [r["seconds"] for r in rows]
    cpu = {g: statistics.median(r["cpu_s"][g] for r in rows) for g in rows[0]["cpu_s"]}
    out: dict[str, Any] = {
        "median_s": statistics.median(secs),
        "min_s": min(secs),
        "max_s": max(secs),
        "cold_s": secs[0],
        "warm_s": summary(secs[1:]) if len(secs) > 1 else None,
        "clean_runs": sum(
            1 for r in rows if r["clean"] and not r["failed"] and not r["unreachable"] and "error" not in r
        ),
        "runs_total": len(rows),
        "cpu_s_median": cpu,
        "runs": rows,
    }
    per_command = [r["agent_cpu_ms_per_command"] for r in rows if "agent_cpu_ms_per_command" in r]
    if per_command:
        out["agent_cpu_ms_per_command_median"] = statistics.median(per_command)
    return out


def tables(results: dict[str, Any]) -> str:
    """The markdown tables RESULTS.md shows: times with the ratio to obstop via agents, then CPU."""
    by = results["by_hosts"]
    ns = sorted(by, key=int)
    names = list(by[ns[-1]]["methods"])
    head = " | ".join(f"N={n}" for n in ns)
    lines = [
        f"| method | {head} | ÷ obstop via agents (N={ns[-1]}) | ÷ bare in-process (N={ns[-1]}) |",
        "|---" * (len(ns) + 3) + "|",
    ]
    for name in names:
        cells = []
        for n in ns:
            m = by[n]["methods"].get(name)
            cells.append("" if m is None else _cell(name, m))
        last = by[ns[-1]]["methods"][name]
        ratio = last.get("ratio_to_obstop_agents")
        r = "" if ratio is None else f"{ratio:.2f}"
        if name.startswith("Ansible") and "ratio_to_obstop_agents_warm" in last:
            r = f"{last['ratio_to_obstop_agents_warm']:.2f} / {last['ratio_to_obstop_agents_cold']:.2f}"
        rb = last.get("ratio_to_bare_inprocess")
        lines.append(f"| {name} | {' | '.join(cells)} | {r} | {'' if rb is None else f'{rb:.2f}'} |")
    groups = ["controller", "controller_net", "agents", "mosquitto", "sshd", "client"]
    lines += ["", f"CPU seconds per stop, N={ns[-1]} (median of runs):", ""]
    lines += [f"| method | {' | '.join(groups)} | agent ms per command |", "|---" * (len(groups) + 2) + "|"]
    for name in names:
        m = by[ns[-1]]["methods"][name]
        cpu = m["cpu_s_median"]
        cells = [f"{cpu[g]:.3f}" if g in cpu else "" for g in groups]
        per = m.get("agent_cpu_ms_per_command_median")
        lines.append(f"| {name} | {' | '.join(cells)} | {'' if per is None else f'{per:.1f}'} |")
    return "\n".join(lines)


def _cell(name: str, m: dict[str, Any]) -> str:
    """Median of all runs; Ansible's warm (ControlPersist) / cold apart. Any run not clean is said."""
    clean = "" if m["clean_runs"] == m["runs_total"] else f" ({m['runs_total'] - m['clean_runs']} not clean)"
    if name.startswith("Ansible") and m["warm_s"]:
        return f"{m['warm_s']['median']:.2f} / {m['cold_s']:.2f} s{clean}"
    return f"{m['median_s']:.2f} s{clean}"


def main() -> None:
    p = argparse.ArgumentParser(description="side by side stop benchmark on the same fake hosts")
    p.add_argument("--hosts", type=int, nargs="+", default=[1, 10, 30])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--methods", nargs="+", choices=list(NAMES), default=list(NAMES))
    p.add_argument("--ansible", default=shutil.which("ansible"), help="ansible executable (skipped if none)")
    p.add_argument("--heavy-rc", action="store_true", help="sessions run root's ~/.bashrc (second table)")
    p.add_argument("--out", type=Path, default=None, help="default bench/results/sidebyside[-heavy-rc].json")
    a = p.parse_args()
    keys = [k for k in a.methods if k != "ansible" or a.ansible]
    if "ansible" in a.methods and not a.ansible:
        print("Ansible skipped: no ansible on PATH and no --ansible given", flush=True)
    out = a.out or Path(f"bench/results/sidebyside{'-heavy-rc' if a.heavy_rc else ''}.json")
    results: dict[str, Any] = {
        "login_shell": "heavy: root's ~/.bashrc" if a.heavy_rc else "light: SetEnv SHLVL=1",
        "runs": a.runs,
        "methods": [NAMES[k] for k in keys],
        "by_hosts": {},
    }
    with tempfile.TemporaryDirectory(prefix="obstop-bench-sbs-") as tmp:
        work = Path(tmp)
        with mosquitto(work / "mqtt") as broker:
            for n in a.hosts:
                results["by_hosts"][str(n)] = run_fleet(n, a.runs, work, broker, keys, a.heavy_rc, a.ansible)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(tables(results))


if __name__ == "__main__":
    main()
