"""The page at /ui/ in a real browser (Debian's Chromium, driven by Playwright) on a real controller process
and fake hosts: an operator logs in, stops the cluster with the button (and its confirmation), watches
the DAG turn green stage by stage, reads a subtask's log, and sees the cluster STOPPED; a viewer sees no
buttons; a stop that fails is rolled back with the page's buttons. `OBSTOP_UI_SCREENSHOT=PATH` also
writes the screenshot there (the README's picture)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from obstop.fakes import hosts as fakehosts
from tests.support.controller import USERS, amend_config
from tests.support.controller_process import ControllerProcess
from tests.support.fakes import fresh_block
from tests.support.processes import alive

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[fakehosts.Fleet]:
    d = tmp_path / "fleet"
    try:
        yield asyncio.run(
            asyncio.to_thread(
                fakehosts.up, d, zones=3, servers_per_zone=1, agents=False, first_ip=fresh_block(3)
            )
        )
    finally:
        fakehosts.down(d)


def browser(pw: Playwright, tmp_path: Path, user: str) -> BrowserContext:
    """A fresh Chromium profile logged in as user (HTTP Basic, as a browser's login prompt does)."""
    return pw.chromium.launch_persistent_context(
        str(tmp_path / f"profile-{user}"),
        executable_path=CHROMIUM,
        args=ARGS,
        http_credentials={"username": user, "password": USERS[user][0]},
        viewport={"width": 2100, "height": 720},
    )


def first_page(context: BrowserContext) -> Page:
    return context.pages[0] if context.pages else context.new_page()


def test_stop_from_the_page(
    tmp_path: Path, fleet: fakehosts.Fleet, controllers: Callable[..., ControllerProcess]
) -> None:
    assert Path(CHROMIUM).exists(), "the browser test needs Debian's chromium (.ci/run installs it)"
    ctl = controllers(amend_config(Path(fleet.dir) / "controller.toml"))
    ctl.start()
    with sync_playwright() as pw:
        admin = browser(pw, tmp_path, "admin")
        try:
            page = first_page(admin)
            page.goto(f"{ctl.url}/ui/")
            cluster = page.locator("[data-cluster='1']")
            expect(cluster).to_contain_text("obcluster")
            expect(cluster.locator(".title .badge")).to_have_text("RUNNING")
            expect(cluster.locator("[data-server]")).to_have_count(3)
            expect(page.locator("#me")).to_contain_text("admin")

            # the plan first: every server would stop, nothing done
            cluster.get_by_role("button", name="Plan stop").click()
            expect(page.locator("#plan")).to_contain_text("would run")
            expect(page.locator("#plan tbody tr")).to_have_count(3)

            cluster.locator("button[data-action=stop]").click()
            expect(page.locator("#confirm-text")).to_contain_text(
                "Stop OB cluster obcluster: stop 3 observer(s)?"
            )
            page.locator("#confirm-yes").click()

            expect(page.locator("#task-name")).to_have_text("#1 Stop OB cluster")
            nodes = page.locator("#dag-svg g.node")
            expect(nodes).to_have_count(1 + 3 + 1 + 3 + 1 + 3 + 1 + 3 + 1 + 3 + 1)
            expect(page.locator("#task-status")).to_have_text("SUCCESSFUL", timeout=30_000)
            expect(page.locator("#dag-svg g.node.st-SUCCESSFUL")).to_have_count(21)
            # stages left to right: 11 columns, the fan-outs three high
            xs = {n.get_attribute("transform").split(",")[0] for n in nodes.all()}  # type: ignore[union-attr]
            assert len(xs) == 11
            stops = page.locator("#dag-svg g.node[data-name='Stop observer process']")
            expect(stops).to_have_count(3)
            expect(stops.first).to_contain_text("ms")  # its duration

            stops.first.click()
            expect(page.locator("#subtask-head")).to_contain_text("Stop observer process")
            expect(page.locator("#log")).to_contain_text("stopped with SIGTERM")
            expect(cluster.locator(".title .badge")).to_have_text("STOPPED", timeout=15_000)
            expect(page.locator("#tasks tbody tr")).to_have_count(1)
            _screenshot(page, tmp_path)
        finally:
            admin.close()
        assert not any(alive(h.observer_pid) for h in fleet.hosts)

        viewer = browser(pw, tmp_path, "viewer")
        try:
            page = first_page(viewer)
            page.goto(f"{ctl.url}/ui/")
            expect(page.locator("[data-cluster='1']")).to_contain_text("STOPPED")
            expect(page.locator("#me")).to_contain_text("viewer · TASK_VIEWER")
            page.locator("#tasks tbody tr").first.click()
            expect(page.locator("#task-status")).to_have_text("SUCCESSFUL")
            expect(page.locator("button")).to_have_count(2)  # only the confirmation dialog's, hidden
        finally:
            viewer.close()
    # the clicks are in the audit trail, under the user who clicked
    trail = ctl.http.get("/api/v2/audit").json()["data"]["contents"]
    assert [(e["user"], e["path"], e["query"]) for e in reversed(trail)] == [
        ("admin", "/api/v2/ob/clusters/1/stop", "dryRun=true"),
        ("admin", "/api/v2/ob/clusters/1/stop", ""),
    ]


def test_a_failed_stop_rolled_back_from_the_page(
    tmp_path: Path, fleet: fakehosts.Fleet, controllers: Callable[..., ControllerProcess]
) -> None:
    (Path(fleet.dir) / "sys.password").write_text("not-the-password\n")  # the freeze cannot be prepared
    ctl = controllers(amend_config(Path(fleet.dir) / "controller.toml"))
    ctl.start()
    with sync_playwright() as pw:
        admin = browser(pw, tmp_path, "admin")
        try:
            page = first_page(admin)
            page.goto(f"{ctl.url}/ui/")
            page.locator("[data-cluster='1'] button[data-action=stop]").click()
            page.locator("#confirm-yes").click()
            expect(page.locator("#task-status")).to_have_text("FAILED", timeout=30_000)
            failed = page.locator("#dag-svg g.node.st-FAILED")
            expect(failed).to_have_count(1)
            failed.click()
            expect(page.locator("#log")).to_contain_text("Access denied")
            # the subtask's operations (retry, skip) and the task's (retry, roll back), each confirmed
            expect(page.locator("#subtask-head button")).to_have_text(["Retry", "Skip"])
            page.locator("#task-head button", has_text="Roll back").click()
            expect(page.locator("#confirm-text")).to_contain_text("Roll task 1 back?")
            page.locator("#confirm-no").click()  # changed their mind: nothing happens
            expect(page.locator("#task-status")).to_have_text("FAILED")
            page.locator("#task-head button", has_text="Roll back").click()
            page.locator("#confirm-yes").click()
            expect(page.locator("#task-status")).to_have_text("SUCCESSFUL", timeout=30_000)
            expect(page.locator("#task-head")).to_contain_text("ROLLBACK")
            expect(page.locator("[data-cluster='1'] .title .badge")).to_have_text("RUNNING")
        finally:
            admin.close()
    assert all(alive(h.observer_pid) for h in fleet.hosts)  # no process was touched
    trail = ctl.http.get("/api/v2/audit").json()["data"]["contents"]
    assert [e["path"] for e in reversed(trail)] == [
        "/api/v2/ob/clusters/1/stop",
        "/api/v2/tasks/instances/1/rollback",
    ]


def _screenshot(page: Page, tmp_path: Path) -> None:
    shot = tmp_path / "ui.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("OBSTOP_UI_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["OBSTOP_UI_SCREENSHOT"])
