"""Who may sign in to the desk, and how hard they may try: agents and supervisors with their
argon2 hashes, and sign-in attempts limited per user and per address."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ace_email.config.settings import Settings

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: str  # "agent" or "supervisor"
    password_hash: str


def users(settings: Settings) -> dict[str, User]:
    """Everyone with a desk password: agents first, then supervisors (ids are distinct)."""
    found: dict[str, User] = {}
    for index, agent in enumerate(settings.agents):
        hashed = agent.desk_password_hash(f"agents[{index}]")
        if hashed:
            found[agent.id] = User(agent.id, agent.name or agent.id, "agent", hashed)
    for index, supervisor in enumerate(settings.supervisors):
        hashed = supervisor.desk_password_hash(f"supervisors[{index}]")
        if hashed:
            found[supervisor.id] = User(
                supervisor.id, supervisor.name or supervisor.id, "supervisor", hashed
            )
    return found


def verify(user: User | None, password: str) -> bool:
    """Constant work whether or not the user exists."""
    hashed = user.password_hash if user is not None else _DUMMY
    try:
        return _HASHER.verify(hashed, password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


_DUMMY = _HASHER.hash("no such user")


class SignInLimiter:
    """At most `attempts` failed sign-ins per user and per address in `window` seconds."""

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def blocked(self, username: str, address: str) -> float:
        """Seconds to wait before the next try; 0 when a try is allowed."""
        now = time.monotonic()
        wait = 0.0
        for key in (f"user:{username.lower()}", f"address:{address}"):
            failures = self._recent(key, now)
            if len(failures) >= self.attempts:
                wait = max(wait, self.window - (now - failures[0]))
        return wait

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        for key in (f"user:{username.lower()}", f"address:{address}"):
            self._recent(key, now).append(now)

    def succeeded(self, username: str) -> None:
        self._failures.pop(f"user:{username.lower()}", None)
