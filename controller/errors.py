"""Controller errors, each with OCP's integer code and HTTP status. The API maps every one of them to
OCP's envelope in one handler (controller/api/app.py), never ad hoc in routes.

OCP's codes (OCP Express's ErrorCodes): 10001 COMMON_ILLEGAL_ARGUMENT, 10002 COMMON_NOT_FOUND,
10010 COMMON_UNEXPECTED, 20000 TASK_NOT_EXISTS, 20003 TASK_STATE_INVALID, 20004 TASK_PROHIBIT_ROLLBACK,
30000 IAM_USER_NOT_AUTHENTICATED, 30004 IAM_BAD_CREDENTIALS, 30007 IAM_USER_LOGIN_BLOCKED,
30014 IAM_OPERATION_NOT_PERMITTED, 50002 OB_CLUSTER_OPS_NOT_ALLOWED, 50004 OB_ZONE_NAME_NOT_FOUND.
obstop's own codes are 10100 and up.

ControllerError                  500 10010  root: unexpected
 +-- BadRequest                  400 10001  malformed input, unknown parameters, no such route
 |    +-- TaskStateInvalid       400 20003  the task (or subtask) is not in a state that allows this
 |    +-- ProhibitRollback       400 20004  the task can not be rolled back
 +-- Unauthorized                401 30000  no credentials
 |    +-- BadCredentials         401 30004  unknown user or wrong password
 +-- Forbidden                   403 30014  the user lacks the role
 |    +-- InsecureTransport      403 10103  HTTP Basic over plain HTTP on a listener that is not loopback
 +-- NotFound                    404 10002  no such cluster, zone, server
 |    +-- TaskNotFound           404 20000  no such task or subtask
 |    +-- ZoneNotFound           404 50004  no such zone in the cluster
 +-- Conflict                    409 10100  a unique key or a concurrent change said no
 |    +-- ClusterOpsNotAllowed   409 50002  the cluster's status, or another task holding it, forbids this
 +-- PayloadTooLarge             413 10101
 +-- UnsupportedMediaType        415 10102
 +-- TooManyAttempts             429 30007  too many failed logins: retry after `retry_after` seconds
 +-- StoreUnavailable            503 10104  the store did not answer this request (restarting, unreachable)
 +-- ConfigError                        a config or inventory file is wrong (refused at start)
 +-- StoreLost                          the store stopped answering a running controller (it exits 1)
 +-- StepFailed                         a subtask's step failed; its message goes to the log and the API
"""

from __future__ import annotations


class ControllerError(Exception):
    status = 500
    code = 10010
    name = "COMMON_UNEXPECTED"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ControllerError):
    status, code, name = 400, 10001, "COMMON_ILLEGAL_ARGUMENT"


class TaskStateInvalid(BadRequest):
    code, name = 20003, "TASK_STATE_INVALID"


class ProhibitRollback(BadRequest):
    code, name = 20004, "TASK_PROHIBIT_ROLLBACK"


class Unauthorized(ControllerError):
    status, code, name = 401, 30000, "IAM_USER_NOT_AUTHENTICATED"


class BadCredentials(Unauthorized):
    code, name = 30004, "IAM_BAD_CREDENTIALS"


class Forbidden(ControllerError):
    status, code, name = 403, 30014, "IAM_OPERATION_NOT_PERMITTED"


class InsecureTransport(Forbidden):
    code, name = 10103, "INSECURE_TRANSPORT"


class NotFound(ControllerError):
    status, code, name = 404, 10002, "COMMON_NOT_FOUND"


class TaskNotFound(NotFound):
    code, name = 20000, "TASK_NOT_EXISTS"


class ZoneNotFound(NotFound):
    code, name = 50004, "OB_ZONE_NAME_NOT_FOUND"


class Conflict(ControllerError):
    status, code, name = 409, 10100, "CONFLICT"


class ClusterOpsNotAllowed(Conflict):
    code, name = 50002, "OB_CLUSTER_OPS_NOT_ALLOWED"


class PayloadTooLarge(ControllerError):
    status, code, name = 413, 10101, "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ControllerError):
    status, code, name = 415, 10102, "UNSUPPORTED_MEDIA_TYPE"


class TooManyAttempts(ControllerError):
    status, code, name = 429, 30007, "IAM_USER_LOGIN_BLOCKED"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(ControllerError):
    status, code, name = 503, 10104, "STORE_UNAVAILABLE"


class StoreLost(ControllerError):
    """The store stopped answering while the controller ran: it exits non-zero with this one line, and
    the service manager (Restart=on-failure) starts it again; the new one resumes its tasks."""


class ConfigError(ControllerError):
    name = "CONFIG_ERROR"


class StepFailed(ControllerError):
    name = "STEP_FAILED"
