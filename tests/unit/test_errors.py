"""How a refusal names its field: the line a sender reads in a dead letter, an HTTP
answer or a config-file error."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from topics.errors import field_errors


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float


def refusal(doc: object) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Strict.model_validate(doc)
    return field_errors(caught.value)


def test_a_wrong_field_is_named() -> None:
    assert refusal({"value": "high"}) == [
        "value: Input should be a valid number, unable to parse string as a number"
    ]


def test_an_error_of_the_whole_message_is_named_as_such() -> None:
    assert refusal([1]) == ["(message): Input should be a valid dictionary or instance of Strict"]


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("", '""'),
        ("a b", '"a b"'),
        ("a.b", '"a.b"'),
        ("a:b", '"a:b"'),
        ("(message)", '"(message)"'),
    ],
)
def test_an_unknown_key_that_could_read_as_another_is_quoted(key: str, named: str) -> None:
    """A key sent as "(message)" is not the whole message; "a.b" is not a path."""
    assert refusal({"value": 1, key: 0}) == [f"{named}: Extra inputs are not permitted"]
