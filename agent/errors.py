"""Agent errors. Each carries the facts an operator needs (host, pid, command, exit status, stderr).

AgentError
 +-- ExecutorError              the executor could not run the procedure at all
 |    +-- HostUnreachable       TCP connect failed or timed out
 |    +-- HostKeyMismatch       the host key is not the one in known_hosts
 |    +-- LoginRefused          the server refused our key / user
 |    +-- RemoteCommandFailed   a remote shell step failed or timed out
 |    +-- LaunchRefused         an observer cannot be started as the owner of its home
 +-- ConfigError                a config file is missing or malformed
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ExecutorError(AgentError):
    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host


class HostUnreachable(ExecutorError):
    pass


class HostKeyMismatch(ExecutorError):
    pass


class LoginRefused(ExecutorError):
    pass


class RemoteCommandFailed(ExecutorError):
    def __init__(
        self, host: str, command: str, exit_status: int | None, stderr: str, message: str | None = None
    ) -> None:
        what = message or f"exit status {exit_status}"
        detail = f": {stderr.strip()[:300]}" if stderr.strip() else ""
        super().__init__(host, f"remote step {command!r} failed ({what}){detail}")
        self.command = command
        self.exit_status = exit_status
        self.stderr = stderr


class LaunchRefused(ExecutorError):
    pass


class ConfigError(AgentError):
    pass
