"""The ops client of the controller's API: where it is, who we are, and the calls."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    url: str
    user: str
    password: str


def resolve(url: str | None, user: str | None, password_file: Path | None, config: Path | None) -> Endpoint:
    """Flags first, then OBSTOP_URL / OBSTOP_USER / OBSTOP_PASSWORD(_FILE), then a controller.toml."""
    url = url or os.environ.get("OBSTOP_URL")
    if url is None and config is not None:
        listen = tomllib.loads(config.read_text()).get("api", {}).get("listen", "127.0.0.1:8080")
        host, _, port = listen.rpartition(":")
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        url = f"http://{host}:{port}"
    password = os.environ.get("OBSTOP_PASSWORD")
    pw_file = password_file or (
        Path(os.environ["OBSTOP_PASSWORD_FILE"]) if os.environ.get("OBSTOP_PASSWORD_FILE") else None
    )
    if pw_file is None and config is not None and (config.parent / "admin.password").exists():
        pw_file = config.parent / "admin.password"  # what `obstop fakehosts up` writes
    if pw_file is not None:
        password = pw_file.read_text().strip()
    return Endpoint(
        url or "http://127.0.0.1:8080", user or os.environ.get("OBSTOP_USER", "admin"), password or ""
    )


class Client:
    def __init__(self, target: Endpoint, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=target.url, auth=(target.user, target.password), timeout=timeout)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the controller at {self._http.base_url}: {exc}") from exc
        try:
            body = r.json()
        except ValueError:
            raise ApiError(r.status_code, r.text[:200]) from None
        if not body.get("successful"):
            raise ApiError(r.status_code, body.get("error", {}).get("message", r.text[:200]))
        return body["data"]

    def stop(self, cluster_id: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v2/ob/clusters/{cluster_id}/stop", json=body)
        return result

    def task(self, task_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v2/tasks/instances/{task_id}")
        return result

    def log(self, task_id: int, subtask_id: int) -> str:
        return str(self._call("GET", f"/api/v2/tasks/instances/{task_id}/subtasks/{subtask_id}/log")["log"])

    def retry(self, task_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v2/tasks/instances/{task_id}/retry")
        return result

    def cluster(self, cluster_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v2/ob/clusters/{cluster_id}")
        return result

    def close(self) -> None:
        self._http.close()
