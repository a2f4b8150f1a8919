"""What the console reads of the threat record, composed here because the console
and the recorder are services of the same layer and do not import each other: the
record's queries and indicators behind ``console.pages.Record``, and the record's
read-only API for the console to mount."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from alerting.directory import Directory
from console.pages import RecordUnavailable, Sources
from recorder.indicators import indicators, parse_period
from recorder.schema import DeadLetterRow, DeliveryAttempt, RuleSetRow

LOCAL = timezone(timedelta(hours=7), "ICT")
T = TypeVar("T")


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


def sources(
    geography_path: Path, directory_path: Path, record_url: str, tokens_path: Path
) -> tuple[Sources, AsyncEngine]:
    """What ``canhbao console`` gives its pages: the geography and directory (the map,
    the lead agencies' receivers), the record and its API with the departments'
    tokens. The engine is returned for the caller to dispose of."""
    from recorder.api import RecordAPI, openapi
    from recorder.store import connect
    from recorder.tokens import Tokens

    directory = Directory.load(geography_path, directory_path)
    leads = {code: {r.id for r in a.receivers} for code, a in directory.agencies.items()}
    engine = connect(record_url)
    api = RecordAPI(engine, Tokens(tokens_path), leads)
    found = Sources(
        geography=directory.geography,
        record=RecordReader(engine, leads),
        record_api=api.subapp(),
        record_openapi=openapi(),
    )
    return found, engine
