"""A network namespace per fake host, joined to this one by a veth pair on a /30 of its own: the host's
observer and agent run inside (`ip netns exec`), the broker listens on the host side. Taking the host
side of the pair down cuts the host off the network; bringing it up gives it back."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

from reliability.procs import TrialError


def unavailable() -> str | None:
    """Why network namespaces cannot be used here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"obrel-probe-{secrets.token_hex(3)}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return f"`ip netns add` refused: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise TrialError(f"ip {' '.join(args)}: {res.stderr.strip()}")


@dataclass
class Netns:
    name: str
    outside: str  # the host side of the veth pair (its address: where the broker listens)
    inside: str  # the fake host's address
    link: str

    @classmethod
    def create(cls, net: int, index: int) -> Netns:
        """Namespace and pair for host index on 10.213.net.(4*index)/30."""
        tag = secrets.token_hex(3)
        ns = cls(
            f"obrel-{tag}-{index}",
            f"10.213.{net}.{4 * index + 1}",
            f"10.213.{net}.{4 * index + 2}",
            f"orh{tag}{index}",
        )
        peer = f"orn{tag}{index}"
        _ip("netns", "add", ns.name)
        try:
            _ip("link", "add", ns.link, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", ns.name)
            _ip("addr", "add", f"{ns.outside}/30", "dev", ns.link)
            _ip("link", "set", ns.link, "up")
            for args in (
                ("addr", "add", f"{ns.inside}/30", "dev", peer),
                ("link", "set", peer, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("netns", "exec", ns.name, "ip", *args)
        except TrialError:
            ns.delete()
            raise
        return ns

    @property
    def wrap(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        _ip("link", "set", self.link, "down")

    def restore(self) -> None:
        _ip("link", "set", self.link, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.link], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
