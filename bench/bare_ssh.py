"""The bare baseline: stop every observer over SSH, all hosts at once, with asyncssh and nothing else.

One connection per host; one shell script each: prove the pid file's process is HOME's observer (cwd and
command line), SIGTERM, wait for exit, wait until both ports are free, remove the pid file.
    python -m bench.bare_ssh SPEC.json   # {"identity", "known_hosts", "hosts": [{"ip", "port", "home"}]}
SCRIPT (with {home} and {hexip} filled in) is also what Ansible and the serial loop run.
"""

import asyncio
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

import asyncssh

SCRIPT = """h='{home}'; f="$h/run/observer.pid"; p=$(cat "$f" 2>/dev/null) || exit 0; [ -n "$p" ] || exit 1
if [ -d "/proc/$p" ]; then
  [ "$(readlink /proc/$p/cwd)" = "$h" ] || { echo "pid $p: cwd not $h"; exit 1; }
  tr '\\000' ' ' </proc/$p/cmdline | grep -qF "$h/bin/observer" || { echo "pid $p: not observer"; exit 1; }
  kill -TERM "$p"; i=0
  while [ -d /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status 2>/dev/null; do
    i=$((i+1)); [ $i -le 600 ] || { echo "pid $p alive after SIGTERM"; exit 1; }; sleep 0.05; done
fi
i=0; while awk '$4=="0A" && ($2=="{hexip}:0B41" || $2=="{hexip}:0B42")' /proc/net/tcp | grep -q .; do
  i=$((i+1)); [ $i -le 600 ] || { echo "ports still held"; exit 1; }; sleep 0.05; done
rm -f "$f"
"""


def hexip(ip: str) -> str:
    return ipaddress.IPv4Address(ip).packed[::-1].hex().upper()  # as /proc/net/tcp spells it


def script(home: str, ip: str) -> str:
    return SCRIPT.replace("{home}", home).replace("{hexip}", hexip(ip))


async def stop_one(h: dict[str, Any], identity: str, known_hosts: str) -> int:
    async with asyncssh.connect(
        h["ip"], h["port"], username="root", client_keys=[identity], known_hosts=known_hosts, config=None
    ) as conn:
        return (await conn.run(script(h["home"], h["ip"]), check=False)).exit_status or 0


async def stop_all(spec: dict[str, Any]) -> dict[str, int]:
    done = await asyncio.gather(
        *(stop_one(h, spec["identity"], spec["known_hosts"]) for h in spec["hosts"]), return_exceptions=True
    )
    return {
        "failed": sum(1 for r in done if not isinstance(r, BaseException) and r != 0),
        "unreachable": sum(1 for r in done if isinstance(r, BaseException)),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(stop_all(json.loads(Path(sys.argv[1]).read_text())))))
