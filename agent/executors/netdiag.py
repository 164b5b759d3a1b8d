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
from obstop.agent.executors.procfs import WILDCARDS

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
_PORT = struct.Struct("!H")
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


def _dump(family: int, ports: frozenset[int] | None, ip: str | None) -> list[Listener]:
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
                    body = offset + _HDR.size
                    port = _PORT.unpack_from(data, body + 4)[0]  # idiag_sport, network order
                    if ports is None or port in ports:  # a busy host listens on many: skip the others
                        fields = _MSG.unpack_from(data, body)
                        addr = _address(fields[0], fields[6])
                        if ip is None or addr == ip or addr in WILDCARDS:
                            out.append(Listener(addr, port, fields[14]))
                offset += (length + 3) & ~3
            if not data:
                return out


def _address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if raw[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return str(ipaddress.IPv6Address(raw))


def listening(ports: frozenset[int] | None = None, ip: str | None = None) -> list[Listener]:
    """TCP sockets in LISTEN state, IPv4 and IPv6: every one, or those on ports (and bound to ip, or to
    a wildcard address: procfs.on_address's match)."""
    wanted = None if ip is None or ip in WILDCARDS else ip
    return _dump(socket.AF_INET, ports, wanted) + _dump(socket.AF_INET6, ports, wanted)
