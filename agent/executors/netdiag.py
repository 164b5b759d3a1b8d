"""Listening TCP sockets from the kernel's sock_diag netlink interface (what `ss -lt` uses).

Reading /proc/net/tcp makes the kernel walk its whole TCP hash table (milliseconds of CPU on a large
host, on every read); asking sock_diag for LISTEN sockets walks only the listening table. An agent
checks ports several times per stop, so this is most of its CPU. Linux only; callers fall back to
/proc/net/tcp when netlink is not available (e.g. a restricted sandbox).
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from obstop.agent.executors.host import Listener

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_DONE = 3
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_TCP_LISTEN = 10
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_REQ = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, id (zeros)
_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")  # inet_diag_msg


def _dump(family: int) -> list[Listener]:
    out: list[Listener] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as s:
        req = _REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN)
        s.sendall(
            _HDR.pack(_HDR.size + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + req
        )
        while True:
            data = s.recv(65536)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, kind, _, _, _ = _HDR.unpack_from(data, offset)
                if kind == _NLMSG_DONE:
                    return out
                if kind == _NLMSG_ERROR:
                    raise OSError("sock_diag answered an error")
                if kind == _SOCK_DIAG_BY_FAMILY:
                    fields = _MSG.unpack_from(data, offset + _HDR.size)
                    fam, sport, src, inode = fields[0], fields[4], fields[6], fields[14]
                    raw = src[:4] if fam == socket.AF_INET else src
                    ip = ipaddress.ip_address(raw)
                    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                        ip = ip.ipv4_mapped
                    out.append(Listener(str(ip), int.from_bytes(sport, "big"), inode))
                offset += (length + 3) & ~3
            if not data:
                return out


def listening() -> list[Listener]:
    """Every TCP socket in LISTEN state, IPv4 and IPv6."""
    return _dump(socket.AF_INET) + _dump(socket.AF_INET6)
