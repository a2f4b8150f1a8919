"""Files of hashed secrets: the ingest API's per-source keys (``feeds/apikeys.py``) and
the record API's per-department tokens (``recorder/tokens.py``) are kept the same way,
here. A secret is 256 random bits, shown once when it is made; the YAML file (a header
saying what it is, then one entry per holder) keeps only its SHA-256, so a copied or
committed file lets nobody in. Each caller brings its own entry model (what a holder
may do) and its own error type (its messages name its command)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from topics import yamlio
from topics.atomic import replace_file
from topics.errors import field_errors

F = TypeVar("F", bound=BaseModel)
E = TypeVar("E")


def hash_secret(secret: str) -> str:
    # Unsalted SHA-256 is the right tool here: secrets are 256-bit random tokens, so
    # there is no dictionary to try and no brute force within reach, which is what salts
    # and slow password hashes (bcrypt, argon2) defend against; they would only slow
    # each request.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 32 random bytes = 256 bits


def read(path: Path, model: type[F], error: type[ValueError]) -> F:
    """The file at ``path`` as ``model``; a missing file is an empty one. ``error``
    (the caller's) says what is wrong, with the path."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return model()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return model.model_validate(yamlio.safe_load(text) or {})
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise error(f"{path}: " + "; ".join(field_errors(exc))) from None


def write(
    path: Path,
    header: str,
    field: str,
    entries: Sequence[BaseModel],
    *,
    private: bool = False,
) -> None:
    """Replace the file whole (a reader, or a crash, sees the old file or the new one):
    ``header``, then the entries under ``field``, each without its unset or default
    values. ``private`` makes it readable by its owner only; otherwise the old file's
    mode is kept (so the API's user can still read it)."""
    data: dict[str, Any] = {
        field: [e.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
                for e in entries]
    }  # fmt: skip
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    replace_file(path, text, 0o600 if private else None)


def find(entries: Iterable[E], digest: Callable[[E], str], secret: str) -> E | None:
    """The entry whose hash is ``secret``'s, or None. Every entry is compared in
    constant time and there is no early exit: the time taken says nothing of the
    secret."""
    hashed = hash_secret(secret)
    found = None
    for entry in entries:
        if hmac.compare_digest(digest(entry), hashed):
            found = entry
    return found
