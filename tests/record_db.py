"""Helpers for tests of the record: a migrated database, records from a message
stream, and a whole-database dump to compare two runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from recorder.decode import Incoming
from recorder.schema import Base
from tests.record_stream import Msg


def incoming(messages: list[Msg], partitions: int = 1) -> list[Incoming]:
    """The messages as a broker would hand them out: offsets counted per partition
    (a key's partition is its hash, as Kafka keeps a key on one partition)."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for i, (topic, key, value) in enumerate(messages):
        p = (sum(key or b"") % partitions) if partitions > 1 else 0
        o = offsets.get((topic, p), 0)
        offsets[(topic, p)] = o + 1
        out.append(Incoming(topic, p, o, key, value, 1_760_410_800_000 + i))
    return out


async def dump(engine: AsyncEngine, skip: tuple[str, ...] = ()) -> dict[str, list[Any]]:
    """Every row of every table, sorted (a row is a tuple of its values)."""
    out: dict[str, list[Any]] = {}
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in skip:
                continue
            rows = (await conn.execute(select(table))).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out
