"""Watches are not journalled: a copy of one that a later watch replaced (a QoS 1 redelivery, a re-send)
must not put the old one back."""

from __future__ import annotations

from obstop.agent.daemon.watch import Watcher
from obstop.agent.protocol import ObserverStateEvent, ObserverTarget, WatchArgs


async def test_a_copy_of_a_replaced_watch_is_ignored() -> None:
    async def publish(event: ObserverStateEvent) -> None:
        return None

    watcher = Watcher("h1", {}, publish)
    old = WatchArgs(targets=[ObserverTarget(host="h1", ip="127.0.0.1", home_path="/old")])
    new = WatchArgs(targets=[ObserverTarget(host="h1", ip="127.0.0.1", home_path="/new")])
    watcher.watch("w1", old)
    watcher.watch("w2", new)

    watcher.watch("w1", old)  # redelivered after w2

    assert watcher._watch_id == "w2" and watcher._args == new
    watcher.watch("w2", new)  # the current one again: harmless
    assert watcher._watch_id == "w2" and watcher._args == new
