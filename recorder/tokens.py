"""API tokens of the record's read-only API, one per department, kept as SHA-256
hashes in a YAML file: the token itself is shown once, when it is made, so a copied
key file lets nobody read. Each token may be limited to some domains and some
communes (a commune committee reads its own; the health department reads health)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from topics import tokenfile
from topics.errors import field_errors
from topics.models import Domain, Identifier

HEADER = """\
# Tokens of the threat record's read-only API (`canhbao record --api`), one per
# department. Only the SHA-256 of each token is kept: the token is shown once, by
# `canhbao record-tokens add DEPARTMENT [--domain D] [--area COMMUNE]`, and never again.
# domains / areas (optional) limit what the department may read; without them, all.
"""


class TokenFileError(ValueError):
    """The token file cannot be read or is not valid."""


class Department(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    domains: list[Domain] | None = Field(default=None, min_length=1)
    areas: list[Identifier] | None = Field(default=None, min_length=1)
    note: str = ""

    def reads_domain(self, domain: str) -> bool:
        return self.domains is None or domain in {d.value for d in self.domains}

    def reads_areas(self, areas: set[str]) -> bool:
        """Whether a warning about ``areas`` is in scope (one of them is enough)."""
        return self.areas is None or bool(areas & set(self.areas))


class TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    departments: list[Department] = Field(default_factory=list)


def hash_token(token: str) -> str:
    return tokenfile.hash_secret(token)


def read_tokens(path: Path) -> TokenFile:
    """The token file; a missing file is an empty one (the API then admits nobody)."""
    return tokenfile.read(path, TokenFile, TokenFileError)


def write_tokens(path: Path, tokens: TokenFile) -> None:
    # Replaced whole (a reader never sees half a file), readable by its owner only.
    tokenfile.write(path, HEADER, "departments", tokens.departments, private=True)


def add_department(
    path: Path, department: str, domains: list[Domain], areas: list[str], rotate: bool = False
) -> str:
    """Make a token for ``department`` (or a new one with ``rotate``); returns it."""
    tokens = read_tokens(path)
    old = next((d for d in tokens.departments if d.id == department), None)
    if old is not None and not rotate:
        raise TokenFileError(f"{department!r} already has a token; --rotate makes a new one")
    if old is None and rotate:
        raise TokenFileError(f"{department!r} has no token to rotate")
    token = tokenfile.new_secret()
    try:
        entry = Department(
            id=department,
            token_sha256=hash_token(token),
            domains=domains or (old.domains if old else None),
            areas=areas or (old.areas if old else None),
        )
    except ValidationError as exc:
        raise TokenFileError("; ".join(field_errors(exc))) from None
    others = [d for d in tokens.departments if d.id != department]
    write_tokens(path, TokenFile(departments=[*others, entry]))
    return token


def remove_department(path: Path, department: str) -> bool:
    tokens = read_tokens(path)
    kept = [d for d in tokens.departments if d.id != department]
    if len(kept) == len(tokens.departments):
        return False
    write_tokens(path, TokenFile(departments=kept))
    return True


class Tokens:
    """The departments the API admits, read again when the file changes."""

    def __init__(
        self, path: Path | None = None, departments: list[Department] | None = None
    ) -> None:
        self.path = path
        self._departments = list(departments or [])
        self._stamp: tuple[int, int] | None = None

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            self._departments = read_tokens(self.path).departments
            self._stamp = stamp

    def find(self, token: str) -> Department | None:
        """The department whose token this is (compared in constant time)."""
        self._reload()
        return tokenfile.find(self._departments, lambda d: d.token_sha256, token)
