"""Property-based tests (hypothesis) over every decoder and parser of what comes in:
nothing crashes with an unexpected exception (only the module's documented error or a
refusal value), every message sent is accepted or refused (the counts add up), and
every refusal names the field at fault.

``CANHBAO_FUZZ_EXAMPLES`` sets how many examples each test tries (200 by default;
``.ci/run`` sets more: README, "Fuzzing")."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CANHBAO_FUZZ_EXAMPLES", "200"))

# No deadline: the machine is shared and a slow example is not a failure here (speed
# is measured by `canhbao bench`). No example database: nothing written into the tree.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # Health checks judge the strategies, not canhbao: one tripping on a loaded machine
    # (a CI run failed once with no falsifying example kept) is not a defect found.
    suppress_health_check=list(HealthCheck),
)

# --- Values --------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    # Values that look right to a careless parser: dates, numbers as text, codes.
    | st.sampled_from(
        [
            "",
            " ",
            "2025-10-07T06:00:00+07:00",
            "2025-10-07T06:00:00",
            "1e400",
            "NaN",
            "-0",
            "bn-vu-ninh",
            "water",
            "Severe",
            "١٢",
            "\x00",
            "a" * 300,
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON-like document (keys and list indexes)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            found.append((*prefix, k))
            found.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found.append((*prefix, i))
            found.extend(_paths(v, (*prefix, i)))
    return found


def mutated(valid: Any, max_mutations: int = 3) -> st.SearchStrategy[Any]:
    """A valid document with a few mutations: a value replaced (by any JSON value or a
    value from elsewhere in the document), a key removed, an unknown key added."""
    # Walked once, not at every example: its paths (those of each fresh copy, until it
    # is first changed) and its values.
    valid_paths = _paths(valid)
    others = st.sampled_from(list(_leaves(valid)) or [None])

    @st.composite
    def one(draw: st.DrawFn) -> Any:
        doc = copy.deepcopy(valid)
        for n in range(draw(st.integers(1, max_mutations))):
            paths = valid_paths if n == 0 else _paths(doc)
            if not paths:
                return draw(json_values)
            path = draw(st.sampled_from(paths))
            parent = doc
            for p in path[:-1]:
                parent = parent[p]
            last = path[-1]
            op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
            if op == "replace":
                parent[last] = draw(json_values | others)
            elif op == "delete":
                del parent[last]
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
            else:
                parent.insert(last, draw(json_values))
        return doc

    return one()


def _leaves(doc: Any) -> Iterable[Any]:
    if isinstance(doc, dict):
        for v in doc.values():
            yield from _leaves(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _leaves(v)
    else:
        yield doc


# --- What a refusal must say -----------------------------------------------------------------

# A field path: segments joined by dots, each a plain key, an index, or a JSON-quoted
# key (topics.errors quotes keys that are empty or hold spaces, dots or colons).
_SEGMENT = r'(?:"(?:[^"\\]|\\.)*"|[^\s.:"]+)'
_FIELD_LINE = re.compile(
    rf"^(?P<field>{_SEGMENT}(?:\.{_SEGMENT})*|\(\w+\)): (?P<message>.+)$", re.DOTALL
)


def assert_names_fields(
    errors: list[str], fields: Iterable[str], whole: str = "(message)", whole_ok: bool = False
) -> None:
    """Each error is ``field.path: message``; an error of the whole message (``whole``,
    a cross-field rule) says in its text which field(s) it is about, unless
    ``whole_ok`` (the input is no object at all: nothing else to name)."""
    assert errors, "a refusal without a single field error"
    names = set(fields)
    for line in errors:
        m = _FIELD_LINE.match(line)
        assert m is not None, f"does not name a field: {line!r}"
        field = m.group("field")
        if field.endswith(whole) and not whole_ok:
            assert any(re.search(rf"\b{re.escape(n)}\b", m.group("message")) for n in names), (
                f"an error of the whole message that names no field: {line!r}"
            )


def model_fields(model: Any) -> list[str]:
    return list(model.model_fields)


def tally(outcomes: list[str], sent: int) -> None:
    """Accepted plus refused is what was sent: nothing lost, nothing counted twice."""
    assert len(outcomes) == sent
    assert outcomes.count("accepted") + outcomes.count("refused") == sent


Check = Callable[[Any], str]
