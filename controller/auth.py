"""HTTP Basic authentication against the users of the controller config, with roles.

Passwords are stored as salted PBKDF2-SHA256 hashes (`obstop passwd` makes one). A verified password is
remembered (as a keyed digest, never in clear) so that each request does not pay the KDF again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from obstop.controller.config import Role, UserConfig
from obstop.controller.errors import BadCredentials, Forbidden, Unauthorized

ITERATIONS = 200_000


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = base64.b64encode(os.urandom(16)).decode().rstrip("=")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode().rstrip('=')}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        algo, iterations, salt, expected = encoded.split("$")
    except ValueError:
        return False
    if algo != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(base64.b64encode(digest).decode().rstrip("="), expected)


# OCP's CLUSTER_MANAGER holds TASK:*:* too: who may stop a cluster may read and operate its tasks
IMPLIES: dict[Role, frozenset[Role]] = {
    Role.CLUSTER_MANAGER: frozenset({Role.TASK_MANAGER, Role.TASK_VIEWER}),
    Role.TASK_MANAGER: frozenset({Role.TASK_VIEWER}),
}


def implied(roles: frozenset[Role]) -> frozenset[Role]:
    """The roles held, with those they imply."""
    return roles.union(*(IMPLIES.get(r, frozenset()) for r in roles))


class Authenticator:
    def __init__(self, users: list[UserConfig]) -> None:
        self._users = {u.name: (i, u) for i, u in enumerate(users, start=100)}
        self._key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()

    def authenticate(self, authorization: str | None) -> tuple[int, str, frozenset[Role]]:
        """(user id, name, roles) for a valid `Authorization: Basic ...` header, else Unauthorized."""
        if not authorization or not authorization.lower().startswith("basic "):
            raise Unauthorized("authentication required: HTTP Basic credentials of a configured user")
        try:
            name, colon, password = (
                base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise Unauthorized("malformed Basic credentials") from exc
        if not colon:
            raise Unauthorized("malformed Basic credentials: expected base64 of user:password")
        entry = self._users.get(name)
        if entry is None:
            raise BadCredentials("unknown user or wrong password")
        uid, user = entry
        token = hmac.new(self._key, f"{name}\0{password}\0{user.password_hash}".encode(), "sha256").digest()
        if token not in self._verified:
            if not verify_password(password, user.password_hash):
                raise BadCredentials("unknown user or wrong password")
            self._verified.add(token)
        return uid, name, frozenset(user.roles)

    @staticmethod
    def require(roles: frozenset[Role], role: Role, user: str) -> None:
        if role not in implied(roles):
            raise Forbidden(f"user {user} lacks the role {role}")
