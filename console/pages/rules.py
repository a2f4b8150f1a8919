"""The rules page (``/rules``): the rule set in force (version, who applied it, when,
from ``canhbao.control.rules``), each rule's thresholds by level, and the rule sets the
record saw applied before it."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from aiohttp import web

from console.pages import RecordUnavailable, Site, Sources
from pipeline.rules.loader import RuleError, compile_rules
from pipeline.rules.model import (
    LEVELLED,
    CompoundCondition,
    Direction,
    ReportCondition,
    Rule,
    StalenessCondition,
)
from topics.durations import format_duration

log = logging.getLogger(__name__)


def _text(v: object) -> str:
    return format_duration(v) if isinstance(v, timedelta) else str(v)


def describe(rule: Rule) -> dict[str, Any]:
    """A rule as the page shows it: what it watches, how, and each level's threshold
    written out ("≥ 4.3" for a rising quantity, "≤ 49.5" for a falling one)."""
    cond = rule.condition
    sel = rule.selector
    watches = ", ".join(
        f"{k} {v}" for k, v in (("metric", sel.metric), ("station", sel.station),
                                ("area", sel.area), ("source", sel.source)) if v
    ) or "—"  # fmt: skip
    if sel.stations:
        watches += f" · stations {', '.join(sel.stations)}"
    how: str = cond.kind
    levels: dict[int, str] = {}
    if isinstance(cond, LEVELLED):
        sign = "≥" if cond.direction is Direction.RISING else "≤"
        pairs = (("aggregate", getattr(cond, "aggregate", None)),
                 ("window", getattr(cond, "window", None)))  # fmt: skip
        extra = [f"{k} {_text(v)}" for k, v in pairs if v]
        if cond.sustained:
            extra.append(f"sustained {format_duration(cond.sustained)}")
        if cond.hysteresis:
            extra.append(f"hysteresis {cond.hysteresis:g}")
        how = " · ".join([cond.kind, *(str(e) for e in extra)])
        for lv in rule.levels:
            levels[lv.level] = f"{sign} {lv.value:g} ({lv.name})"
    else:
        for lv in rule.levels:
            levels[lv.level] = lv.name
        if isinstance(cond, StalenessCondition):
            how = f"staleness · silent for {cond.describe()}"
        elif isinstance(cond, ReportCondition):
            how = f"report · {', '.join(cond.categories)}"
        elif isinstance(cond, CompoundCondition):
            parts = [c.rule or c.hazard or str(c.domain) for c in cond.all_of]
            how = f"compound · {' + '.join(p for p in parts if p)}"
    return {
        "id": rule.id, "domain": rule.domain.value, "hazard": rule.hazard,
        "group_by": rule.group_by.value, "watches": watches, "how": how,
        "levels": [levels.get(n, "") for n in range(1, 6)], "notify": rule.notify,
    }  # fmt: skip


def register(app: web.Application, site: Site, sources: Sources) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        doc = None
        problem = None
        if sources.rules is not None:
            try:
                doc = await sources.rules.in_force()
            except Exception as exc:  # a broker away: the page says so
                log.warning("the rule set in force cannot be read: %s", exc)
                problem = f"canhbao.control.rules: {exc}"
        rules: list[dict[str, Any]] = []
        if doc is not None:
            try:
                rules = [describe(r) for r in compile_rules(doc.sources).rules]
            except RuleError as exc:
                problem = "; ".join(exc.problems[:5])
        history: list[dict[str, Any]] | None = None
        if sources.record is not None:
            try:
                history = await sources.record.rule_sets(20)
            except RecordUnavailable as exc:
                problem = problem or str(exc)
        rules.sort(key=lambda r: (r["domain"], r["id"]))
        return site.render(request, "rules.html", doc=doc, rules=rules, history=history,
                           problem=problem)  # fmt: skip

    app.router.add_get("/rules", page)
