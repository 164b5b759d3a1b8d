"""HTTP Basic authentication against the users of the controller config, with roles.

Passwords are stored as salted PBKDF2-SHA256 hashes (`obstop passwd`: 600,000 iterations, OWASP's current
advice). Logins cost the same for unknown and known users (an unknown user is checked against a dummy hash
of the same cost), run off the event loop, and a few at a time. Failed logins are limited per client
address and per user (429 with Retry-After). The cost is paid once per client session: a verified login is
remembered for a few minutes as a keyed digest (HMAC) of user, password, stored hash and client address,
never in clear, so `obstop stop --watch` polling stays cheap and a changed password or hash is not
remembered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import os
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from obstop.controller.config import ApiConfig, Role
from obstop.controller.errors import BadCredentials, Forbidden, TooManyAttempts, Unauthorized

ITERATIONS = 600_000
MAX_CREDENTIALS = 1024  # Basic credentials longer than this are not credentials


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = base64.b64encode(os.urandom(16)).decode().rstrip("=")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode().rstrip('=')}"


def iterations_of(encoded: str) -> int:
    try:
        return int(encoded.split("$")[1])
    except (IndexError, ValueError):
        return ITERATIONS


def verify_password(password: str, encoded: str) -> bool:
    try:
        algo, iterations, salt, expected = encoded.split("$")
    except ValueError:
        return False
    if algo != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(base64.b64encode(digest).decode().rstrip("="), expected)


@dataclass(frozen=True)
class Caller:
    id: int
    name: str
    roles: frozenset[Role]


# OCP's CLUSTER_MANAGER holds TASK:*:* too: who may stop a cluster may read and operate its tasks
IMPLIES: dict[Role, frozenset[Role]] = {
    Role.CLUSTER_MANAGER: frozenset({Role.TASK_MANAGER, Role.TASK_VIEWER}),
    Role.TASK_MANAGER: frozenset({Role.TASK_VIEWER}),
}


def implied(roles: frozenset[Role]) -> frozenset[Role]:
    """The roles held, with those they imply."""
    return roles.union(*(IMPLIES.get(r, frozenset()) for r in roles))


class FailedLogins:
    """Failures per key (a client address, a user name) in a sliding window; bounded in keys remembered."""

    def __init__(self, window: float, max_keys: int = 10_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str, limit: int) -> int | None:
        """Seconds until key may try again, or None when it may try now."""
        times = self._seen.get(key)
        if times is None:
            return None
        now = time.monotonic()
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < limit:
            return None
        return max(1, math.ceil(times[0] + self.window - now))

    def record(self, key: str, limit: int) -> None:
        times = self._seen.setdefault(key, deque(maxlen=limit))
        times.append(time.monotonic())
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)


class Authenticator:
    def __init__(self, api: ApiConfig, *, session_ttl: float = 300.0, max_sessions: int = 4096) -> None:
        self._users = {u.name: (i, u) for i, u in enumerate(api.users, start=100)}
        self._per_address = api.failed_logins_per_address
        self._per_user = api.failed_logins_per_user
        self._failed = FailedLogins(api.failed_logins_window_seconds)
        self._key = secrets.token_bytes(32)
        # an unknown user costs what the costliest known one does
        cost = max((iterations_of(u.password_hash) for u in api.users), default=ITERATIONS)
        self._dummy = f"pbkdf2_sha256${cost}${secrets.token_hex(8)}${secrets.token_hex(16)}"
        self._verified: OrderedDict[bytes, float] = OrderedDict()  # HMAC -> expiry (monotonic)
        self._ttl = session_ttl
        self._max_sessions = max_sessions
        self._kdf = asyncio.Semaphore(2)  # PBKDF2 is CPU: a few at a time, off the event loop

    async def login(self, authorization: str | None, client: str) -> Caller:
        """The caller of a valid `Authorization: Basic ...` header; else Unauthorized, BadCredentials or
        TooManyAttempts (whose retry_after becomes the Retry-After header)."""
        name, password = _credentials(authorization)
        entry = self._users.get(name)
        stored = entry[1].password_hash if entry is not None else self._dummy
        # bound to the client's address too: a right guess from elsewhere is not waved through by another
        # client's session, it meets the limits like any guess
        secret = f"{name}\0{password}\0{stored}\0{client}".encode()
        token = hmac.new(self._key, secret, "sha256").digest()
        if entry is not None and self._remembered(token):
            return Caller(entry[0], name, frozenset(entry[1].roles))
        limits = (
            (f"address {client}", self._per_address, "from this address"),
            (f"user {name}", self._per_user, "as this user"),
        )
        for key, limit, which in limits:
            wait = self._failed.retry_after(key, limit)
            if wait is not None:
                raise TooManyAttempts(f"too many failed logins {which}; retry after {wait}s", wait)
        async with self._kdf:
            ok = await asyncio.to_thread(verify_password, password, stored)
        if entry is None or not ok:
            self._failed.record(f"address {client}", self._per_address)
            self._failed.record(f"user {name}", self._per_user)
            raise BadCredentials("unknown user or wrong password")
        self._remember(token)
        return Caller(entry[0], name, frozenset(entry[1].roles))

    def _remembered(self, token: bytes) -> bool:
        expiry = self._verified.get(token)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self._verified[token]
            return False
        return True

    def _remember(self, token: bytes) -> None:
        self._verified[token] = time.monotonic() + self._ttl
        self._verified.move_to_end(token)
        while len(self._verified) > self._max_sessions:
            self._verified.popitem(last=False)

    @staticmethod
    def require(roles: frozenset[Role], role: Role, user: str) -> None:
        if role not in implied(roles):
            raise Forbidden(f"user {user} lacks the role {role}")


def _credentials(authorization: str | None) -> tuple[str, str]:
    if not authorization or not authorization.lower().startswith("basic "):
        raise Unauthorized("authentication required: HTTP Basic credentials of a configured user")
    if len(authorization) > MAX_CREDENTIALS:
        raise Unauthorized("malformed Basic credentials: too long")
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthorized("malformed Basic credentials") from exc
    name, colon, password = decoded.partition(":")
    if not colon:
        raise Unauthorized("malformed Basic credentials: expected base64 of user:password")
    return name, password
