"""Parsers of the /proc texts both executors read, on texts as the kernel writes them."""

from __future__ import annotations

from obstop.agent.executors.host import Listener
from obstop.agent.executors.procfs import on_address, parse_locks, parse_net_tcp, parse_stat, socket_inodes

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0500000A:0B41 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31001 1 0 100 0 0 10 0
   1: 0500000A:0B42 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31002 1 0 100 0 0 10 0
   2: 0500000A:0B41 0600000A:D431 01 00000000:00000000 00:00000000 00000000  1000        0 31003 1 0 20 4 30 10 -1
   3: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1200 1 0 100 0 0 10 0
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0B42 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41001 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000500000A:0B41 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41002 1 0 100 0 0 10 0
   2: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 41003 1 0 100 0 0 10 0
   3: garbage
"""


def test_listen_sockets_of_tcp_and_tcp6() -> None:
    assert parse_net_tcp(TCP + TCP6) == [
        Listener("10.0.0.5", 2881, 31001),
        Listener("10.0.0.5", 2882, 31002),
        Listener("0.0.0.0", 22, 1200),  # the established connection (st 01) is not a listener
        Listener("::", 2882, 41001),
        Listener("10.0.0.5", 2881, 41002),  # an IPv4-mapped address reads as IPv4
        Listener("::1", 8080, 41003),
    ]
    assert parse_net_tcp("") == []


def test_listeners_on_an_address() -> None:
    listeners = parse_net_tcp(TCP + TCP6)
    ports = (2881, 2882)
    assert {(x.ip, x.port) for x in on_address(listeners, "10.0.0.5", ports)} == {
        ("10.0.0.5", 2881),
        ("10.0.0.5", 2882),
        ("::", 2882),  # a wildcard listener holds the port on every address
    }
    assert {(x.ip, x.port) for x in on_address(listeners, "10.0.0.6", ports)} == {("::", 2882)}
    assert len(on_address(listeners, "0.0.0.0", ports)) == 4  # the wildcard target: any address
    assert on_address(listeners, "10.0.0.5", (3306,)) == []


def test_locks_held_and_waiters() -> None:
    text = """\
1: POSIX  ADVISORY  WRITE 4242 fd:01:777 0 EOF
1: -> POSIX  ADVISORY  WRITE 5151 fd:01:777 0 EOF
2: FLOCK  ADVISORY  WRITE 4242 00:1a:12345 0 EOF
4: POSIX  ADVISORY  WRITE 6000 08:02:notanumber 0 EOF
short line
"""
    assert parse_locks(text) == {4242: {777, 12345}}


def test_stat_state_and_start_time() -> None:
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    fields = " ".join(str(n) for n in range(4, 53))
    assert parse_stat(f"4242 (observer) S {fields}\n") == ("S", 22)
    assert parse_stat(f"4242 (my (odd) name) Z {fields}") == ("Z", 22)


def test_socket_inodes_from_fd_links() -> None:
    links = [
        "socket:[31001]",
        "pipe:[5]",
        "/dev/null",
        "socket:[x]",
        "anon_inode:[eventpoll]",
        "socket:[31002]",
    ]
    assert socket_inodes(links) == {31001, 31002}
