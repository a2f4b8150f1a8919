"""One way to say what is wrong with a message: each pydantic error as a line naming
the field ("stations.3.domain: Field required"), the same in dead letters, HTTP
answers, config-file errors and the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from topics import yamlio

M = TypeVar("M", bound=BaseModel)


# Not starting with "(": an error of the whole document is named "(message)" or "(file)".
_PLAIN_KEY = re.compile(r"[^\s.:\"(][^\s.:\"]*")


def _segment(part: str | int) -> str:
    # A key sent as "", " ", "a.b" or "(message)" would otherwise read as no field, as
    # another path or as the whole message: such a key is quoted, so the sender sees
    # which one is meant.
    text = str(part)
    return text if isinstance(part, int) or _PLAIN_KEY.fullmatch(text) else json.dumps(text)


def error_fields(exc: ValidationError, whole: str = "(message)") -> list[tuple[str, str]]:
    """Each error as (field path, message); ``whole`` names an error of the whole
    document (an empty path)."""
    return [
        (".".join(_segment(p) for p in err["loc"]) or whole, err["msg"])
        for err in exc.errors(include_url=False)
    ]


def field_errors(exc: ValidationError, whole: str = "(message)", prefix: str = "") -> list[str]:
    """Each error as '``prefix``field.path: message' (``prefix`` is, say, the file)."""
    return [f"{prefix}{field}: {message}" for field, message in error_fields(exc, whole)]


def load_yaml_model(path: Path, model: type[M], error: type[Exception]) -> M:
    """The YAML file at ``path`` as a ``model``, or ``error`` with one line per problem
    (unreadable, not YAML, or each invalid field, named)."""
    try:
        data = yamlio.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error("\n".join(field_errors(exc, "(file)", prefix=f"{path}: "))) from exc
