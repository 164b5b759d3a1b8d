"""What `pip install obstop` puts into site-packages: the wheel's only top-level name is `obstop` (agent/
and controller/ go in as obstop.agent and obstop.controller, never as top-level `agent`, `controller`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_installs_only_the_obstop_package(tmp_path: Path) -> None:
    # build from a copy: a build writes build/ and *.egg-info into the tree it builds
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".venv", "venv"
        ),
    )
    out = tmp_path / "wheels"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = out.glob("obstop-*.whl")

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top = {n.split("/", 1)[0] for n in names}
        (dist_info,) = [t for t in top if t.endswith(".dist-info")]
        assert top == {"obstop", dist_info}
        assert z.read(f"{dist_info}/top_level.txt").decode().split() == ["obstop"]
    # the symlinked folders are in the wheel as real packages under obstop/
    assert {"obstop/agent/protocol.py", "obstop/controller/daemon.py", "obstop/cli/__init__.py"} <= set(names)
    # the page's files ship in the wheel (no CDN: /ui/ needs nothing else)
    static = {f"obstop/controller/api/static/{n}" for n in ("index.html", "app.js", "style.css")}
    assert static <= set(names)
    # and its migrations
    assert "obstop/controller/store/migrations/versions/0004_audit.py" in names
