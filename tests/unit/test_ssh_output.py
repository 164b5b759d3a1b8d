"""Listeners as `ss -ltne` prints them (the SSH executor's probe where the host has ss), and the local
addresses `held` looks for: the same answers as the kernel tables' parsers give."""

from __future__ import annotations

from obstop.agent.executors import procfs
from obstop.agent.executors.host import Listener
from obstop.agent.executors.ssh_output import parse_listeners, ss_keys

SS = """State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess
LISTEN 0      100     127.0.1.11:2881      0.0.0.0:*    ino:149497 sk:14a5 cgroup:/ <->
LISTEN 0      128        0.0.0.0:2882      0.0.0.0:*    uid:1000 ino:7248 sk:1 cgroup:/ <->
LISTEN 0      128              *:2881            *:*    ino:11 sk:2 cgroup:/ <->
LISTEN 0      128           [::]:2882         [::]:*    ino:12 sk:3 cgroup:/ <->
LISTEN 0      128 [::ffff:127.0.0.5]:2881     [::]:*    ino:13 sk:4 cgroup:/ <->
LISTEN 0      128   127.0.0.1%lo:2882      0.0.0.0:*    ino:14 sk:5 cgroup:/ <->
"""


def test_ss_lines_are_listeners_as_the_tables_spell_them() -> None:
    assert parse_listeners(SS) == [
        Listener("127.0.1.11", 2881, 149497),
        Listener("0.0.0.0", 2882, 7248),
        Listener("::", 2881, 11),
        Listener("::", 2882, 12),
        Listener("127.0.0.5", 2881, 13),
        Listener("127.0.0.1", 2882, 14),
    ]


def test_on_address_reads_ss_lines_as_it_reads_the_tables() -> None:
    held = procfs.on_address(parse_listeners(SS), "127.0.1.11", (2881, 2882))
    assert {(x.ip, x.port) for x in held} == {
        ("127.0.1.11", 2881),
        ("0.0.0.0", 2882),
        ("::", 2881),
        ("::", 2882),
    }


def test_held_keys_name_the_address_and_the_wildcards_and_any_for_a_wildcard_target() -> None:
    keys = ss_keys(["127.0.1.11"], (2881,))
    assert set(keys) == {"127.0.1.11:2881", "[::ffff:127.0.1.11]:2881", "0.0.0.0:2881", "*:2881", "[::]:2881"}
    assert ss_keys(["0.0.0.0"], (2881, 2882)) == ["ANY:2881", "ANY:2882"]
    assert "[fe80::1]:2881" in ss_keys(["fe80::1"], (2881,))
