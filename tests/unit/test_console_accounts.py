"""The console's accounts (console.accounts): Argon2id hashes, roles, sessions with
expiry, throttling after five wrong passwords, disabling."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from console.accounts import (
    MAX_FAILURES,
    THROTTLE_SECONDS,
    AccountError,
    Accounts,
    LoginResult,
    Permission,
    Role,
)

PASSWORD = "correct horse battery"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def accounts(tmp_path: Path, **kw: object) -> Accounts:
    return Accounts(tmp_path / "console.db", b"k" * 32, hasher=FAST, **kw)  # type: ignore[arg-type]


def test_passwords_are_stored_as_argon2id_hashes_only(tmp_path: Path) -> None:
    a = Accounts(tmp_path / "console.db", b"k" * 32)  # the real parameters
    a.add("truc-ban-a", Role.OPERATOR, PASSWORD)
    raw = (tmp_path / "console.db").read_bytes()
    assert PASSWORD.encode() not in raw
    assert b"$argon2id$" in raw
    assert a.login("truc-ban-a", PASSWORD) is LoginResult.OK
    assert a.login("truc-ban-a", PASSWORD + "x") is LoginResult.WRONG


def test_bad_names_roles_and_short_passwords_are_refused(tmp_path: Path) -> None:
    a = accounts(tmp_path)
    with pytest.raises(AccountError, match="not allowed"):
        a.add("Trực ban", Role.OPERATOR, PASSWORD)
    with pytest.raises(AccountError, match="not allowed"):
        a.add("canhbao", Role.ADMIN, PASSWORD)  # the pipeline's own name as requester
    with pytest.raises(AccountError, match="no role"):
        a.add("bob", "chief", PASSWORD)
    with pytest.raises(AccountError, match="12 characters"):
        a.add("bob", Role.VIEWER, "short")
    a.add("bob", Role.VIEWER, PASSWORD)
    with pytest.raises(AccountError, match="exists"):
        a.add("bob", Role.ADMIN, PASSWORD)


def test_roles_grant_what_each_job_needs(tmp_path: Path) -> None:
    a = accounts(tmp_path)
    for role in Role:
        a.add(role.value, role, PASSWORD)
    may = {r.value: {p for p in Permission if a.get(r.value).may(p)} for r in Role}  # type: ignore[union-attr]
    assert may["viewer"] == {Permission.VIEW}
    assert may["engineer"] == {Permission.VIEW}
    assert may["operator"] == {Permission.VIEW, Permission.ACT}
    assert may["approver"] == {Permission.VIEW, Permission.ACT, Permission.APPROVE}
    assert may["admin"] == set(Permission)


def test_five_wrong_passwords_throttle_even_the_right_one(tmp_path: Path) -> None:
    a = accounts(tmp_path)
    a.add("truc-ban-a", Role.OPERATOR, PASSWORD)
    results = [a.login("truc-ban-a", "guess", now=1000.0 + i) for i in range(MAX_FAILURES)]
    assert results == [LoginResult.WRONG] * (MAX_FAILURES - 1) + [LoginResult.THROTTLED]
    assert a.login("truc-ban-a", PASSWORD, now=1010.0) is LoginResult.THROTTLED
    # After the throttle period the right password works again, and resets the count.
    later = 1004.0 + THROTTLE_SECONDS + 1
    assert a.login("truc-ban-a", PASSWORD, now=later) is LoginResult.OK
    assert a.login("truc-ban-a", "guess", now=later + 1) is LoginResult.WRONG


def test_a_right_password_before_the_fifth_resets_the_count(tmp_path: Path) -> None:
    a = accounts(tmp_path)
    a.add("truc-ban-a", Role.OPERATOR, PASSWORD)
    for i in range(MAX_FAILURES - 1):
        a.login("truc-ban-a", "guess", now=1000.0 + i)
    assert a.login("truc-ban-a", PASSWORD, now=1010.0) is LoginResult.OK
    assert a.login("truc-ban-a", "guess", now=1011.0) is LoginResult.WRONG


def test_sessions_expire_and_are_unusable_from_a_copy_of_the_file(tmp_path: Path) -> None:
    a = accounts(tmp_path, session_seconds=60)
    a.add("truc-ban-a", Role.OPERATOR, PASSWORD)
    token = a.open_session("truc-ban-a", now=1000.0)
    s = a.session(token, now=1030.0)
    assert s is not None and s.account.name == "truc-ban-a" and len(s.csrf) >= 32
    assert a.session(token, now=1061.0) is None
    assert token.encode() not in (tmp_path / "console.db").read_bytes()
    other_key = Accounts(tmp_path / "console.db", b"x" * 32, hasher=FAST)
    assert other_key.session(token, now=1030.0) is None


def test_disabling_an_account_ends_its_sessions_and_logins(tmp_path: Path) -> None:
    a = accounts(tmp_path)
    a.add("truc-ban-a", Role.OPERATOR, PASSWORD)
    token = a.open_session("truc-ban-a")
    a.disable("truc-ban-a")
    assert a.session(token) is None
    assert a.login("truc-ban-a", PASSWORD) is LoginResult.WRONG
    assert [(x.name, x.disabled) for x in a.list()] == [("truc-ban-a", True)]
    with pytest.raises(AccountError, match="no account"):
        a.disable("nobody")
