"""Controller errors. The API maps each to the OCP envelope in one handler.

ControllerError                 500  root
 +-- BadRequest                 400  the request is malformed or names impossible values
 +-- Unauthorized               401  no or bad credentials
 +-- Forbidden                  403  the user lacks the role
 +-- NotFound                   404  no such cluster / task / subtask
 +-- Conflict                   409  the state does not allow it (status, another task)
 +-- ConfigError                     a config or inventory file is wrong (refused at start)
 +-- StepFailed                      a subtask's step failed; its message goes to the log and API
"""

from __future__ import annotations


class ControllerError(Exception):
    status = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ControllerError):
    status = 400
    code = "BAD_REQUEST"


class Unauthorized(ControllerError):
    status = 401
    code = "UNAUTHORIZED"


class Forbidden(ControllerError):
    status = 403
    code = "FORBIDDEN"


class NotFound(ControllerError):
    status = 404
    code = "NOT_FOUND"


class Conflict(ControllerError):
    status = 409
    code = "CONFLICT"


class ConfigError(ControllerError):
    code = "CONFIG_ERROR"


class StepFailed(ControllerError):
    code = "STEP_FAILED"
