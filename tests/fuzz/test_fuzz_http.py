"""Fuzzed batches of the HTTP ingest API (``feeds.http_api``): the body parsed, each
item validated, then judged by the validate stage's policy. A batch is taken whole or
answered 400 listing every item at fault by index and field; nothing raises."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from feeds.apikeys import Source, hash_key
from feeds.http_api import Outcome, _kinds, judge_items, parse_items, validate_items
from pipeline.validate import TimePolicy
from tests.fuzz.conftest import FUZZ, json_values, mutated
from tests.fuzz.test_fuzz_messages import DIRECTORY, NOW, READING, REPORT

KINDS = _kinds()
SOURCES = [
    Source(id="tram-bac-ninh", key_sha256=hash_key("k")),
    Source(id="open-network", key_sha256=hash_key("k"), hold_unknown_stations=True),
]
VALID = {"readings": READING, "reports": REPORT}


@st.composite
def bodies(draw: st.DrawFn, kind: str) -> bytes:
    items = draw(st.lists(mutated(VALID[kind]) | st.just(VALID[kind]) | json_values, max_size=6))
    doc: Any = items[0] if len(items) == 1 and draw(st.booleans()) else items
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    return draw(
        st.just(raw) | st.binary(max_size=60) | st.just(raw[: draw(st.integers(0, len(raw)))])
    )


def _answer_names_items(answer: Outcome, sent: int) -> None:
    assert answer.status == 400 and answer.body["error"]
    for failure in answer.body.get("items", []):
        assert 0 <= failure["index"] < sent
        assert failure["errors"]
        for e in failure["errors"]:
            assert e["field"] and e["message"], failure


@FUZZ
@given(
    st.sampled_from(sorted(KINDS)).flatmap(lambda k: st.tuples(st.just(k), bodies(k))),
    st.sampled_from(SOURCES),
)
def test_http_batches_are_taken_whole_or_refused_item_by_item(
    case: tuple[str, bytes], source: Source
) -> None:
    name, body = case
    kind = KINDS[name]
    items = parse_items(body)
    if isinstance(items, Outcome):
        assert items.status == 400 and items.body["error"]  # not JSON, or no batch
        return
    models = validate_items(kind, items)
    if isinstance(models, Outcome):
        _answer_names_items(models, len(items))
        return
    assert len(models) == len(items)
    judged = judge_items(kind, source, models, now=NOW, policy=TimePolicy(), directory=DIRECTORY)
    if judged.answer is not None:
        _answer_names_items(judged.answer, len(items))
        assert sum(judged.refused.values()) == len(judged.answer.body["items"])
    else:
        # Accepted plus held (kept for replay) is what was sent.
        assert len(judged.take) + len(judged.held) == len(items)


def test_the_valid_batches_the_fuzzer_starts_from_are_taken() -> None:
    for name, doc in VALID.items():
        kind = KINDS[name]
        items = parse_items(json.dumps([doc, doc]).encode())
        assert isinstance(items, list)
        models = validate_items(kind, items)
        assert isinstance(models, list)
        judged = judge_items(
            kind, SOURCES[0], models, now=NOW, policy=TimePolicy(), directory=DIRECTORY
        )
        assert judged.answer is None and len(judged.take) == 2
