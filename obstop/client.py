"""The ops client of the controller's API: where it is, who we are, the calls, and what each failure
means for the command line (one exit code per kind, one line saying which):

    0  success
    1  the task failed, or the controller refused the operation (state, conflict, no such thing)
    2  usage or configuration error (bad arguments, a missing or unreadable file, a bad request)
    3  the controller could not be reached
    4  authentication or permission refused
"""

from __future__ import annotations

import os
import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 1, 2, 3, 4


class ClientError(Exception):
    """Why a command could not do what it was asked; `exit_code` says which kind of why."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(ClientError):
    exit_code = EXIT_USAGE


class Unreachable(ClientError):
    exit_code = EXIT_UNREACHABLE


class ApiError(ClientError):
    """The controller answered with an error: its status and OCP code decide the exit code."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        where = f"code {code}, HTTP {status}" if code is not None else f"HTTP {status}"
        super().__init__(f"{message} ({where})")
        self.status, self.code = status, code
        if status in (401, 403):
            self.exit_code = EXIT_AUTH
        elif status in (400, 413, 415) and code not in (20003, 20004):
            self.exit_code = EXIT_USAGE  # the request itself was wrong, not the state it met
        else:
            self.exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Endpoint:
    url: str
    user: str
    password: str
    password_source: str = ""  # where the password came from, to say so when it is refused
    ca_file: Path | None = None  # the CA that signed the controller's certificate (https)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


def resolve(
    url: str | None,
    user: str | None,
    password_file: Path | None,
    config: Path | None,
    ca_file: Path | None = None,
) -> Endpoint:
    """Flags first, then OBSTOP_URL / OBSTOP_USER / OBSTOP_PASSWORD(_FILE) / OBSTOP_CA_FILE, then a
    controller.toml (https when its [api] has a tls_cert)."""
    url = url or os.environ.get("OBSTOP_URL")
    if url is None and config is not None:
        try:
            parsed = tomllib.loads(_read(config, "config"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"config {config}: {exc}") from None
        listen = str(parsed.get("api", {}).get("listen", "127.0.0.1:8080"))
        host, _, port = listen.rpartition(":")
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        scheme = "https" if parsed.get("api", {}).get("tls_cert") else "http"
        url = f"{scheme}://{host}:{port}"
    password, source = os.environ.get("OBSTOP_PASSWORD"), "OBSTOP_PASSWORD"
    pw_file = password_file or (
        Path(os.environ["OBSTOP_PASSWORD_FILE"]) if os.environ.get("OBSTOP_PASSWORD_FILE") else None
    )
    if pw_file is None and config is not None and (config.parent / "admin.password").exists():
        pw_file = config.parent / "admin.password"  # what `obstop fakehosts up` writes
    if pw_file is not None:
        password = _read(pw_file, "password file").strip()
        source = f"password file {pw_file}" + ("" if password else ", which is empty")
    elif not password:
        source = "no password given (--password-file or OBSTOP_PASSWORD_FILE)"
    ca = ca_file or (Path(os.environ["OBSTOP_CA_FILE"]) if os.environ.get("OBSTOP_CA_FILE") else None)
    return Endpoint(
        url or "http://127.0.0.1:8080",
        user or os.environ.get("OBSTOP_USER", "admin"),
        password or "",
        source,
        ca,
    )


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification against the CA file when one is given (else the system's CAs)."""
    if ca_file is None:
        return ssl.create_default_context()
    _read(ca_file, "CA file")  # missing or unreadable: one line, exit 2
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except ssl.SSLError as exc:
        raise UsageError(f"CA file {ca_file}: not a PEM certificate ({exc.reason or exc})") from None


class Client:
    def __init__(self, target: Endpoint, timeout: float = 30.0) -> None:
        self.target = target
        self._http = httpx.Client(
            base_url=target.url,
            auth=(target.user, target.password),
            timeout=timeout,
            verify=tls_context(target.ca_file),
        )

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            if "CERTIFICATE_VERIFY_FAILED" in reason:
                reason += (
                    " (give the CA that signed the controller's certificate: --ca-file or OBSTOP_CA_FILE)"
                )
            raise Unreachable(f"cannot reach the controller at {self.target.url}: {reason}") from None
        try:
            body = r.json()
        except ValueError:
            raise ApiError(r.status_code, f"not an obstop answer: {r.text[:200]!r}") from None
        if not isinstance(body, dict) or not body.get("successful"):
            error = body.get("error", {}) if isinstance(body, dict) else {}
            message = str(error.get("message") or r.text[:200])
            if r.status_code == 401:
                message += f" (user {self.target.user}; {self.target.password_source})"
            code = error.get("code")
            raise ApiError(r.status_code, message, code if isinstance(code, int) else None)
        return body["data"]

    def stop(self, cluster_id: int, body: dict[str, Any] | None = None, plan: bool = False) -> dict[str, Any]:
        """The task; with plan, the plan (dry run: every check, nothing done)."""
        params = {"dryRun": "true"} if plan else None
        path = f"/api/v2/ob/clusters/{cluster_id}/stop"
        result: dict[str, Any] = self._call("POST", path, json=body, params=params)
        return result

    def start(self, cluster_id: int, plan: bool = False) -> dict[str, Any]:
        params = {"dryRun": "true"} if plan else None
        result: dict[str, Any] = self._call("POST", f"/api/v2/ob/clusters/{cluster_id}/start", params=params)
        return result

    def zone(
        self, verb: str, cluster_id: int, zone: str, body: dict[str, Any] | None = None, plan: bool = False
    ) -> dict[str, Any]:
        """Stop or start one zone (verb: stop | start): the task, or with plan the plan."""
        path = f"/api/v2/ob/clusters/{cluster_id}/zones/{quote(zone, safe='')}/{verb}"
        params = {"dryRun": "true"} if plan else None
        result: dict[str, Any] = self._call("POST", path, json=body, params=params)
        return result

    def server(
        self,
        verb: str,
        cluster_id: int,
        server_id: int,
        body: dict[str, Any] | None = None,
        plan: bool = False,
    ) -> dict[str, Any]:
        """Stop or start one server (verb: stop | start): the task, or with plan the plan."""
        path = f"/api/v2/ob/clusters/{cluster_id}/servers/{server_id}/{verb}"
        params = {"dryRun": "true"} if plan else None
        result: dict[str, Any] = self._call("POST", path, json=body, params=params)
        return result

    def task(self, task_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v2/tasks/instances/{task_id}")
        return result

    def tasks(self, params: list[tuple[str, str | int]]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/api/v2/tasks/instances", params=params)
        return result

    def log(self, task_id: int, subtask_id: int) -> str:
        return str(self._call("GET", f"/api/v2/tasks/instances/{task_id}/subtasks/{subtask_id}/log")["log"])

    def retry(self, task_id: int, subtask_id: int | None = None) -> dict[str, Any]:
        path = f"/api/v2/tasks/instances/{task_id}"
        result: dict[str, Any] = self._call(
            "POST", f"{path}/subtasks/{subtask_id}/retry" if subtask_id else f"{path}/retry"
        )
        return result

    def rollback(self, task_id: int) -> None:
        self._call("POST", f"/api/v2/tasks/instances/{task_id}/rollback")

    def skip(self, task_id: int, subtask_id: int) -> None:
        self._call("POST", f"/api/v2/tasks/instances/{task_id}/subtasks/{subtask_id}/skip")

    def cancel(self, task_id: int, subtask_id: int) -> None:
        self._call("POST", f"/api/v2/tasks/instances/{task_id}/subtasks/{subtask_id}/cancel")

    def audit(self, params: list[tuple[str, str | int]]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/api/v2/audit", params=params)
        return result

    def cluster(self, cluster_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v2/ob/clusters/{cluster_id}")
        return result

    def close(self) -> None:
        self._http.close()
