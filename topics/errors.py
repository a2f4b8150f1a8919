"""One way to say what is wrong with a message: each pydantic error as a line."""

from __future__ import annotations

from pydantic import ValidationError


def field_errors(exc: ValidationError) -> list[str]:
    """Each pydantic error as 'field.path: message'."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        out.append(f"{loc}: {err['msg']}")
    return out
