"""One way to say what is wrong with a message: each pydantic error as a line naming
the field ("stations.3.domain: Field required"), the same in dead letters, HTTP
answers, config-file errors and the command line."""

from __future__ import annotations

from pydantic import ValidationError


def error_fields(exc: ValidationError, whole: str = "(message)") -> list[tuple[str, str]]:
    """Each error as (field path, message); ``whole`` names an error of the whole
    document (an empty path)."""
    return [
        (".".join(str(p) for p in err["loc"]) or whole, err["msg"])
        for err in exc.errors(include_url=False)
    ]


def field_errors(exc: ValidationError, whole: str = "(message)", prefix: str = "") -> list[str]:
    """Each error as '``prefix``field.path: message' (``prefix`` is, say, the file)."""
    return [f"{prefix}{field}: {message}" for field, message in error_fields(exc, whole)]
