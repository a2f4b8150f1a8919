"""What the console reads of the threat record, composed here because the console
and the recorder are services of the same layer and do not import each other:

- ``RecordHistory``: ``console.history.History``, a warning's record read with
  ``recorder.report.gather`` (the after-action report's own query), and the rule's
  levels from the rule set in force when the warning was raised, else the rule files;
- ``RecordReader`` and ``sources``: the record's queries and indicators behind
  ``console.pages.Record``, and the record's read-only API for the console to mount."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from alerting.chart import Period, Point
from alerting.directory import Directory
from console.history import HistoryUnavailable, Level, WarningRecord
from console.pages import RecordUnavailable, Sources
from pipeline.rules.loader import RuleError, compile_rules, read_sources
from recorder.indicators import indicators, parse_period
from recorder.report import gather
from recorder.schema import DeadLetterRow, DeliveryAttempt, RuleSetRow

LOCAL = timezone(timedelta(hours=7), "ICT")
T = TypeVar("T")


def _why(exc: SQLAlchemyError) -> str:
    """What the operator reads when the record cannot be read: the database's own
    first line, and what to do when the record's tables were never made."""
    first = str(exc.__cause__ or exc).splitlines()[0]
    # SQLite says "no such table", PostgreSQL 'relation "..." does not exist'.
    if "no such table" in first or ("relation" in first and "does not exist" in first):
        return f"{first}: the record has not been created in this database yet (canhbao db upgrade)"
    return first


class RecordHistory:
    """``console.history.History`` on the record's engine (shared with the pages' reads:
    one connection pool per console)."""

    def __init__(self, engine: AsyncEngine, rules_path: Path | None = None) -> None:
        self.engine = engine
        self.rules_path = rules_path

    async def warning(self, warning_id: str, rule_id: str) -> WarningRecord | None:
        try:
            # The page shows the timeline, states and readings, not the indicators.
            event = await gather(self.engine, warning_id, with_indicators=False)
            if event is None:
                return None
            raised = min(s.raised_at for s in event.states)
            levels = await self._levels(rule_id, raised)
        except SQLAlchemyError as exc:
            # A record not made yet (canhbao db upgrade) or a database down: said on the
            # page, the rest of the console goes on.
            raise HistoryUnavailable(_why(exc)) from exc
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


class RecordReader:
    """``console.pages.Record`` on the record's database (read only)."""

    def __init__(self, engine: AsyncEngine, lead_receivers: Mapping[str, set[str]]) -> None:
        self.engine = engine
        self.lead_receivers = lead_receivers

    async def _read(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        except (OperationalError, DBAPIError, OSError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise RecordUnavailable(f"the threat record cannot be read: {reason}") from exc

    async def rule_sets(self, limit: int) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            q = select(RuleSetRow).order_by(RuleSetRow.applied_at.desc()).limit(limit)
            async with AsyncSession(self.engine) as s:
                return [
                    {"version": r.version, "applied_at": r.applied_at,
                     "applied_by": r.applied_by, "comment": r.comment}
                    for r in await s.scalars(q)
                ]  # fmt: skip

        return await self._read(go)

    async def dead_letters(self, since: datetime) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            q = select(DeadLetterRow).where(DeadLetterRow.at >= since).order_by(DeadLetterRow.at)
            async with AsyncSession(self.engine) as s:
                return [
                    {"at": d.at, "source_topic": d.source_topic, "stage": d.stage,
                     "reason": d.reason}
                    for d in await s.scalars(q)
                ]  # fmt: skip

        return await self._read(go)

    async def failed_deliveries(self, since: datetime) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            q = (
                select(DeliveryAttempt)
                .where(DeliveryAttempt.at >= since, DeliveryAttempt.outcome == "failed")
                .order_by(DeliveryAttempt.at)
            )
            async with AsyncSession(self.engine) as s:
                return [
                    {"at": a.at, "channel": a.channel, "receiver_id": a.receiver_id,
                     "error": a.error, "status_code": a.status_code, "warning_id": a.warning_id}
                    for a in await s.scalars(q)
                ]  # fmt: skip

        return await self._read(go)

    async def indicators(self, period: str, area: str | None, domain: str | None) -> dict[str, Any]:
        parsed = parse_period(period, LOCAL)  # ValueError: the page says what is accepted
        return await self._read(
            lambda: indicators(
                self.engine, parsed, area=area, domain=domain, lead_receivers=self.lead_receivers
            )
        )


def sources(directory: Directory, engine: AsyncEngine, tokens_path: Path, tz: tzinfo) -> Sources:
    """What ``canhbao console`` gives its pages: the geography and directory (the map,
    the lead agencies' receivers), the record and its API with the departments'
    tokens, all on ``engine`` (the caller's, which it disposes of)."""
    from recorder.api import RecordAPI, openapi
    from recorder.tokens import Tokens

    leads = {code: {r.id for r in a.receivers} for code, a in directory.agencies.items()}
    api = RecordAPI(engine, Tokens(tokens_path), leads, tz)
    return Sources(
        geography=directory.geography,
        record=RecordReader(engine, leads),
        record_api=api.subapp(),
        record_openapi=openapi(),
    )
