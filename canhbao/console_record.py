"""The console's view of the threat record: ``console.history.History`` read from the
record's database with ``recorder.report.gather`` (the after-action report's own
query), and the rule's levels from the rule set that was in force when the warning was
raised (``rule_sets``), else from the rule files. Here, at the top, because the console
and the recorder are services of one layer and do not import each other."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from alerting.chart import Period, Point
from console.history import HistoryUnavailable, Level, WarningRecord
from pipeline.rules.loader import RuleError, compile_rules, read_sources
from recorder.report import gather
from recorder.schema import RuleSetRow
from recorder.store import connect


class RecordHistory:
    def __init__(self, url: str, rules_path: Path | None = None) -> None:
        self.url = url
        self.rules_path = rules_path
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = connect(self.url)
        return self._engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    async def warning(self, warning_id: str, rule_id: str) -> WarningRecord | None:
        try:
            event = await gather(self.engine, warning_id)
            if event is None:
                return None
            raised = min(s.raised_at for s in event.states)
            levels = await self._levels(rule_id, raised)
        except SQLAlchemyError as exc:
            # A record not made yet (canhbao db upgrade) or a database down: said on the
            # page, the rest of the console goes on.
            raise HistoryUnavailable(str(exc.__cause__ or exc).splitlines()[0]) from exc
        tl = event.timeline
        return WarningRecord(
            periods=[Period(s.updated_at, s.level, s.level_name, s.version, s.transition)
                     for s in event.states],
            points=[Point(r.station_id, r.metric, r.observed_at, r.value, r.threshold)
                    for r in event.readings],
            levels=levels, actions=tl["actions"], notifications=tl["notifications"],
            deliveries=tl["deliveries"], first_published=event.states[0].logged_at,
        )  # fmt: skip

    async def _levels(self, rule_id: str, raised_at: datetime) -> list[Level]:
        """The levels of ``rule_id`` in the rule set applied last before the warning was
        raised (the newest if none was before), else in the rule files."""
        async with AsyncSession(self.engine) as session:
            rows = list(await session.scalars(select(RuleSetRow).order_by(RuleSetRow.applied_at)))
        chosen = [r for r in rows if r.applied_at <= raised_at] or rows
        sources = chosen[-1].sources if chosen else None
        if sources is None and self.rules_path is not None and self.rules_path.exists():
            sources = read_sources(self.rules_path)
        if not sources:
            return []
        try:
            rule = compile_rules(dict(sources)).get(rule_id)
        except RuleError:
            return []
        # Only a threshold rule's levels are values of the readings charted.
        if rule is None or rule.condition.kind != "threshold":
            return []
        return [Level(lv.level, lv.name, lv.value) for lv in rule.levels]
