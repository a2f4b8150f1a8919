"""What a ``canhbao.control.rules`` record means, judged alike by the workers that
apply it, the stage that dead-letters a refused one, and every reader that shows the
rule set in force (``canhbao rules active``, the console): the last set on the topic
that reads and compiles. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from pipeline.rules.loader import RuleError, RuleSet, compile_rules
from pipeline.validate import Code, Refused
from topics.errors import field_errors
from topics.models import RuleSetDoc


def not_a(what: str, exc: ValidationError) -> Refused:
    """Why a control record is not ``what``: not JSON, or each invalid field."""
    if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False)):
        return Refused(Code.MALFORMED, f"not {what}: not valid JSON", ["(message): not JSON"])
    errors = field_errors(exc)
    return Refused(Code.INVALID, f"not {what}: " + "; ".join(errors[:5]), errors)


def read_rule_set(raw: bytes | None) -> RuleSetDoc | Refused:
    """The rule set document a ``canhbao.control.rules`` record carries, or why not."""
    if raw is None:
        return Refused(
            Code.INVALID,
            "a tombstone on canhbao.control.rules: the rule set in force is replaced "
            "(canhbao rules apply), never deleted",
        )
    try:
        return RuleSetDoc.model_validate_json(raw)
    except ValidationError as exc:
        return not_a("a rule set", exc)


def compile_rule_set(doc: RuleSetDoc) -> RuleSet | Refused:
    """``doc``'s rules compiled, or every problem that keeps them from compiling."""
    try:
        return compile_rules(doc.sources)
    except RuleError as exc:
        return Refused(
            Code.INVALID,
            f"rule set {doc.version} (applied by {doc.applied_by}) does not compile: "
            + "; ".join(exc.problems[:5]),
            list(exc.problems),
        )


def last_in_force(values: Sequence[bytes | None]) -> tuple[RuleSetDoc, RuleSet] | None:
    """The rule set in force after the control topic's ``values`` (in order): the last
    one that reads and compiles, the one the followers end up applying. A refused
    record last on the topic (poison, a set that does not compile) changes nothing."""
    for raw in reversed(values):
        doc = read_rule_set(raw)
        if isinstance(doc, Refused):
            continue
        rules = compile_rule_set(doc)
        if not isinstance(rules, Refused):
            return doc, rules
    return None
