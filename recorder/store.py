"""Writing the record: a batch's rows and the offsets it consumed in one transaction.

Why both: the rows and the offsets commit or roll back together, so a recorder that
dies at any point restarts from the offset of the last batch it committed, exactly
where its rows end (no row lost, none doubled). The offset update is conditional on
the offset the batch started from: if another member of the group wrote the partition
meanwhile (a rebalance moved it), the batch is refused whole (:class:`StaleOffsets`)
and the caller reads again from what is stored. The inserts are keyed by natural ids
and ignore a row already there, a second line of defence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, and_, case, delete, event, select, update
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from recorder import migrate
from recorder.decode import Rows
from recorder.schema import (
    Base,
    BroadcastRow,
    EvidenceReading,
    KafkaOffset,
    ReadingRow,
    SilenceRow,
)

#: Tables whose row is an entity's latest state: the newer record (higher offset)
#: replaces the older. Every other table only ever gains rows.
LATEST_STATE: tuple[type[Base], ...] = (BroadcastRow, SilenceRow)

#: A silence lifted early (a tombstone: no matchers, no author) keeps what was set, so
#: the record says what was silenced, by whom, and who lifted it.
KEPT_ON_REMOVAL: dict[type[Base], tuple[str, ...]] = {
    SilenceRow: ("matchers", "starts_at", "ends_at", "created_by", "comment"),
}

Partition = tuple[str, int]


class StaleOffsets(RuntimeError):
    """Another consumer wrote these partitions' offsets since this batch was read."""

    def __init__(self, partitions: Sequence[Partition]) -> None:
        super().__init__(", ".join(f"{t}[{p}]" for t, p in partitions))
        self.partitions = list(partitions)


@dataclass(frozen=True)
class Span:
    """What a batch consumed of one partition: from the offset stored when it was
    read (None: nothing stored yet) to the next offset to read."""

    start: int | None
    end: int


def connect(url: str) -> AsyncEngine:
    """An engine for ``url``; SQLite's directory is created, and SQLite is set up for
    a writer and readers at once (WAL) that wait for each other rather than fail."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)


def _insert(dialect: Dialect, table: type[Base]) -> Insert:
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise ValueError(f"the record runs on SQLite or PostgreSQL, not {dialect.name}")


def _table(table: type[Base]) -> Table:
    return Base.metadata.tables[table.__tablename__]


def _keys(table: type[Base]) -> list[str]:
    return [c.name for c in _table(table).primary_key.columns]


def _latest(table: type[Base], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key, the newest (a statement may not update a row twice); a removal
    keeps what the state it removes had (:data:`KEPT_ON_REMOVAL`)."""
    keys = _keys(table)
    kept = KEPT_ON_REMOVAL.get(table, ())
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[c] for c in keys)
        old = by_key.get(k)
        if old is None or old["position"] <= row["position"]:
            if old is not None and kept and row["removed_at"] is not None:
                row = {**row, **{c: old[c] for c in kept}}
            by_key[k] = row
    return list(by_key.values())


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(connect(url))

    async def close(self) -> None:
        await self.engine.dispose()

    async def check_schema(self) -> None:
        """:class:`recorder.migrate.SchemaError` unless the schema is this code's."""
        await migrate.check(self.engine)

    async def offsets(self, group_id: str) -> dict[Partition, int]:
        """The next offset to read of every partition the group recorded."""
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(KafkaOffset.topic, KafkaOffset.partition, KafkaOffset.next_offset).where(
                    KafkaOffset.group_id == group_id
                )
            )
            return {(t, p): o for t, p, o in result.all()}

    async def apply(self, group_id: str, rows: Rows, spans: Mapping[Partition, Span]) -> None:
        """Write ``rows`` and advance ``spans`` in one transaction (all or nothing)."""
        async with self.engine.begin() as conn:
            await self._write_rows(conn, rows)
            await self._advance(conn, group_id, spans)

    async def _write_rows(self, conn: AsyncConnection, rows: Rows) -> None:
        for table, batch in rows.tables.items():
            stmt = _insert(conn.dialect, table)
            if table in LATEST_STATE:
                batch = _latest(table, batch)
                columns = [c.name for c in _table(table).columns]
                keys = _keys(table)
                col = _table(table).c
                new = stmt.excluded  # type: ignore[attr-defined]
                kept = KEPT_ON_REMOVAL.get(table, ())
                set_ = {
                    c: case((new.removed_at.is_not(None), col[c]), else_=new[c])
                    if c in kept
                    else new[c]
                    for c in columns
                    if c not in keys
                }
                stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                    index_elements=keys, set_=set_, where=col.position < new.position
                )
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=_keys(table))  # type: ignore[attr-defined]
            await conn.execute(stmt, batch)

    async def _advance(
        self, conn: AsyncConnection, group_id: str, spans: Mapping[Partition, Span]
    ) -> None:
        stale: list[Partition] = []
        for (topic, partition), span in spans.items():
            if span.start is None:
                first = (
                    _insert(conn.dialect, KafkaOffset)
                    .values(
                        group_id=group_id, topic=topic, partition=partition, next_offset=span.end
                    )
                    .on_conflict_do_nothing()  # type: ignore[attr-defined]
                )
                if (await conn.execute(first)).rowcount != 1:
                    stale.append((topic, partition))
                continue
            result = await conn.execute(
                update(KafkaOffset)
                .where(
                    and_(
                        KafkaOffset.group_id == group_id,
                        KafkaOffset.topic == topic,
                        KafkaOffset.partition == partition,
                        KafkaOffset.next_offset == span.start,
                    )
                )
                .values(next_offset=span.end)
            )
            if result.rowcount != 1:
                stale.append((topic, partition))
        if stale:
            raise StaleOffsets(stale)  # rolls the whole batch back

    async def purge(self, before: datetime) -> dict[str, int]:
        """Delete the readings (those the rules selected, and the evidence of warnings)
        observed before ``before``; how many, by table. The warnings, deliveries and
        actions are never purged."""
        out: dict[str, int] = {}
        async with self.engine.begin() as conn:
            for table in (ReadingRow, EvidenceReading):
                result = await conn.execute(delete(table).where(table.observed_at < before))
                out[table.__tablename__] = int(result.rowcount)
        return out
