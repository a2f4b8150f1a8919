"""Short ways for tests to drive the pure core; not part of the product."""

from __future__ import annotations

from alerting.routes import ReceiverConfig, RoutingConfig, receivers_with_grouping
from pipeline import state
from pipeline.engine import Engine, Outputs
from pipeline.lifecycle import Context
from pipeline.rules.loader import RuleSet
from pipeline.rules.model import Rule
from topics.models import Reading, Warning


def evaluate_rule(
    engine: Engine, rule: Rule, reading: Reading, store: dict[str, object]
) -> Outputs:
    """One levelled rule on one reading, without the quality gate (the rule's subject
    must be the reading's station)."""
    out = Outputs()
    engine._levelled(rule, reading.station_id, reading, store, out)
    return out


def step(rule: Rule, previous: Warning | None, reading: Reading, ctx: Context) -> Warning | None:
    """One rule's next state after ``reading``, from the engine itself (no quality
    gate): a short way to drive a warning through its lifecycle."""
    store: dict[str, object] = {}
    if previous is not None:
        store[state.warning_key(previous.warning_id)] = previous.model_dump(mode="json")
    engine = Engine(RuleSet((rule,)), ctx.directory, exercise=ctx.exercise)
    out = evaluate_rule(engine, rule, reading, store)
    return out.warnings[-1] if out.warnings else None


def receivers_for(config: RoutingConfig, warning: Warning) -> list[ReceiverConfig]:
    """The receivers a warning is routed to, each once, in routing order."""
    return [r for r, _ in receivers_with_grouping(config, warning)]
