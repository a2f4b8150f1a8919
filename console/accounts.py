"""Accounts, roles, sessions and login throttling, in one small SQLite file.

One file holds what several console processes on a host must share: the accounts
(Argon2id hashes only), the server-side sessions (stored as an HMAC of the token, so a
copy of the file does not give anyone a session) and the failed-login counts. SQLite
serialises the writers; every call here is one short transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Role(StrEnum):
    VIEWER = "viewer"  # sees the stream, warnings and broadcasts
    OPERATOR = "operator"  # acts on warnings: verify, acknowledge, phase, false alarm, resolve
    APPROVER = "approver"  # what an operator does, and approves or cancels citizen broadcasts
    ENGINEER = "engineer"  # sees everything (rules and health pages to come); does not act
    ADMIN = "admin"  # everything


class Permission(StrEnum):
    VIEW = "view"
    ACT = "act"  # lifecycle and phase commands on a warning
    APPROVE = "approve"  # approve or cancel a citizen broadcast


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.ENGINEER: frozenset({Permission.VIEW}),
    Role.OPERATOR: frozenset({Permission.VIEW, Permission.ACT}),
    Role.APPROVER: frozenset({Permission.VIEW, Permission.ACT, Permission.APPROVE}),
    Role.ADMIN: frozenset(Permission),
}

# Account names travel as the actor of every command: keep them plain. "canhbao" is
# the pipeline's own name as the requester of broadcasts, so no person may take it.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
RESERVED = frozenset({"canhbao"})
MIN_PASSWORD = 12

# Five wrong passwords in a row and the account is throttled for THROTTLE_SECONDS,
# whatever password comes next; a right password before that resets the count.
MAX_FAILURES = 5
THROTTLE_SECONDS = 300.0


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why."""


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    disabled: bool

    def may(self, permission: Permission) -> bool:
        return not self.disabled and permission in PERMISSIONS[self.role]


@dataclass(frozen=True)
class Session:
    account: Account
    csrf: str
    expires_at: float


class LoginResult(StrEnum):
    OK = "ok"
    WRONG = "wrong"  # unknown account, wrong password or disabled: the same to the caller
    THROTTLED = "throttled"


_SCHEMA = """
create table if not exists accounts (
    name text primary key, role text not null, hash text not null,
    disabled integer not null default 0, created_at real not null);
create table if not exists sessions (
    token_mac text primary key, name text not null, csrf text not null,
    expires_at real not null);
create table if not exists failures (
    name text primary key, count integer not null, last_at real not null);
"""


class Accounts:
    """The accounts file. ``secret`` keys the session tokens' HMAC: consoles sharing the
    file must share it too."""

    def __init__(
        self,
        path: Path,
        secret: bytes,
        session_seconds: float = 8 * 3600,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.path = path
        self._secret = secret
        self.session_seconds = session_seconds
        # Argon2id (the library's default type) with its RFC 9106 "low memory" profile.
        self._hasher = hasher or PasswordHasher()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            yield db

    # -- accounts ---------------------------------------------------------------

    def add(self, name: str, role: Role | str, password: str) -> Account:
        if not NAME.match(name) or name in RESERVED:
            raise AccountError(
                f"account name {name!r} is not allowed: 2-64 of a-z 0-9 . _ -, starting with "
                f"a letter or digit, and not {', '.join(sorted(RESERVED))}"
            )
        try:
            role = Role(role)
        except ValueError:
            raise AccountError(
                f"no role {role!r}: one of {', '.join(r.value for r in Role)}"
            ) from None
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"the password needs at least {MIN_PASSWORD} characters")
        digest = self._hasher.hash(password)
        with self._db() as db:
            try:
                db.execute(
                    "insert into accounts (name, role, hash, created_at) values (?, ?, ?, ?)",
                    (name, role.value, digest, time.time()),
                )
            except sqlite3.IntegrityError:
                raise AccountError(f"account {name} exists already") from None
        return Account(name, role, False)

    def get(self, name: str) -> Account | None:
        with self._db() as db:
            row = db.execute(
                "select name, role, disabled from accounts where name = ?", (name,)
            ).fetchone()
        return None if row is None else Account(row[0], Role(row[1]), bool(row[2]))

    def list(self) -> list[Account]:
        with self._db() as db:
            rows = db.execute("select name, role, disabled from accounts order by name").fetchall()
        return [Account(r[0], Role(r[1]), bool(r[2])) for r in rows]

    def disable(self, name: str) -> None:
        """Disable ``name`` and end its sessions at once."""
        with self._db() as db:
            if db.execute("update accounts set disabled = 1 where name = ?", (name,)).rowcount == 0:
                raise AccountError(f"no account {name}")
            db.execute("delete from sessions where name = ?", (name,))

    # -- login ------------------------------------------------------------------

    def login(self, name: str, password: str, now: float | None = None) -> LoginResult:
        now = time.time() if now is None else now
        with self._db() as db:
            fail = db.execute(
                "select count, last_at from failures where name = ?", (name,)
            ).fetchone()
            if fail and fail[0] >= MAX_FAILURES and now - fail[1] < THROTTLE_SECONDS:
                return LoginResult.THROTTLED
            row = db.execute(
                "select hash, disabled from accounts where name = ?", (name,)
            ).fetchone()
        ok = False
        if row is not None:
            try:
                ok = self._hasher.verify(row[0], password) and not row[1]
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                ok = False
        else:
            # Spend the same time as a real check: the answer must not tell which
            # account names exist.
            self._hasher.hash(password)
        with self._db() as db:
            if ok:
                db.execute("delete from failures where name = ?", (name,))
                return LoginResult.OK
            # After a throttle period the count starts again from one.
            stale = fail is not None and now - fail[1] >= THROTTLE_SECONDS
            count = 1 if fail is None or stale else fail[0] + 1
            db.execute(
                "insert or replace into failures (name, count, last_at) values (?, ?, ?)",
                (name, count, now),
            )
        return LoginResult.THROTTLED if count >= MAX_FAILURES else LoginResult.WRONG

    # -- sessions ---------------------------------------------------------------

    def _mac(self, token: str) -> str:
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()

    def open_session(self, name: str, now: float | None = None) -> str:
        """A new session for ``name``: its token, which only the browser's cookie holds."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        with self._db() as db:
            db.execute("delete from sessions where expires_at <= ?", (now,))
            db.execute(
                "insert into sessions (token_mac, name, csrf, expires_at) values (?, ?, ?, ?)",
                (self._mac(token), name, secrets.token_urlsafe(32), now + self.session_seconds),
            )
        return token

    def session(self, token: str, now: float | None = None) -> Session | None:
        """The live session of ``token``: None when unknown, expired, or its account is
        disabled or gone."""
        now = time.time() if now is None else now
        with self._db() as db:
            row = db.execute(
                "select s.csrf, s.expires_at, a.name, a.role, a.disabled from sessions s "
                "join accounts a on a.name = s.name where s.token_mac = ?",
                (self._mac(token),),
            ).fetchone()
        if row is None or row[1] <= now or row[4]:
            return None
        return Session(Account(row[2], Role(row[3]), False), row[0], row[1])

    def close_session(self, token: str) -> None:
        with self._db() as db:
            db.execute("delete from sessions where token_mac = ?", (self._mac(token),))
