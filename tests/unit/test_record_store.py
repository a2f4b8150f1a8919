"""The threat record's store: rows and offsets in one transaction (exactly once),
natural keys, unreadable records kept, schema checks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, text

from recorder import migrate
from recorder.decode import Incoming, decode
from recorder.schema import (
    AuditEntry,
    BroadcastRow,
    DeadLetterRow,
    DeliveryAttempt,
    EvidenceReading,
    KafkaOffset,
    NotificationRow,
    SilenceRow,
    UnreadableRecord,
    WarningVersion,
)
from recorder.service import Recorder, RecorderConfig
from recorder.store import Span, StaleOffsets, Store
from tests import servers
from tests.record_db import dump, incoming
from tests.record_stream import stream
from topics.catalogue import COMMANDS, WARNINGS
from topics.metrics import Metrics

GROUP = "canhbao.record"


async def _store(path: Path) -> Store:
    store = Store.open(f"sqlite+aiosqlite:///{path}")
    await migrate.upgrade(store.engine)
    return store


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One throw-away PostgreSQL cluster for the module (a fresh database per test)."""
    with servers.postgresql() as url:
        yield url


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server("postgresql"))]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same tests on the embedded SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        s = await _store(tmp_path / "record.db")
        yield s
        await s.close()
        return
    import asyncpg

    url: str = request.getfixturevalue("cluster")
    name = f"t{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    s = Store.open(url.rsplit("/", 1)[0] + f"/{name}")
    await migrate.upgrade(s.engine)
    yield s
    await s.close()


def spans(records: list[Incoming], stored: dict[tuple[str, int], int]) -> dict[Any, Span]:
    out: dict[Any, Span] = {}
    for r in records:
        tp = (r.topic, r.partition)
        out[tp] = Span(stored.get(tp), r.offset + 1)
    return out


async def apply_in_batches(store: Store, records: list[Incoming], size: int) -> None:
    for i in range(0, len(records), size):
        batch = records[i : i + size]
        await store.apply(GROUP, decode(batch), spans(batch, await store.offsets(GROUP)))


async def count(store: Store, table: Any, *where: Any) -> int:
    async with store.engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


async def test_a_stream_is_recorded_whole_with_the_offsets_it_consumed(store: Store) -> None:
    records = incoming(stream(), partitions=3)
    await apply_in_batches(store, records, 40)

    assert await count(store, WarningVersion) == 36  # 12 warnings x 3 states
    assert await count(store, NotificationRow) == 72
    assert await count(store, DeliveryAttempt, DeliveryAttempt.outcome == "failed") == 1
    assert await count(store, AuditEntry, AuditEntry.kind == "command") == 12
    assert await count(store, AuditEntry, AuditEntry.kind == "approval") == 3
    assert await count(store, AuditEntry, AuditEntry.kind == "rules") == 1
    assert await count(store, AuditEntry, AuditEntry.kind == "silence") == 2
    assert await count(store, DeadLetterRow) == 1
    assert await count(store, EvidenceReading) == 36
    async with store.engine.connect() as conn:
        broadcast = (await conn.execute(select(BroadcastRow))).one()
        silence = (await conn.execute(select(SilenceRow))).one()
    assert (broadcast.status, broadcast.approvals) == ("sent", ["an.nguyen", "binh.tran"])
    assert silence.removed_at is not None  # set, then lifted by a tombstone
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[(r.topic, r.partition)] = r.offset + 1
    assert await store.offsets(GROUP) == last


async def test_a_batch_whose_commit_never_happened_is_recorded_once_when_read_again(
    store: Store, tmp_path: Path
) -> None:
    records = incoming(stream(), partitions=3)
    first, second = records[:100], records[100:]
    await apply_in_batches(store, first, 100)
    before = await dump(store.engine)

    class Crash(Exception):
        pass

    # The recorder dies after writing the second batch's rows, before the commit.
    original = store._advance

    async def crash(*args: Any) -> None:
        await original(*args)
        raise Crash

    store._advance = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await store.apply(GROUP, decode(second), spans(second, await store.offsets(GROUP)))
    store._advance = original  # type: ignore[method-assign]
    assert await dump(store.engine) == before  # neither rows nor offsets

    # Restarted, it reads again from the stored offsets: the rows of one clean run.
    await apply_in_batches(store, second, 57)
    clean = await _store(tmp_path / "clean.db")
    try:
        await apply_in_batches(clean, records, len(records))
        assert await dump(store.engine) == await dump(clean.engine)
    finally:
        await clean.close()


async def test_a_batch_read_from_an_offset_another_member_moved_is_refused_whole(
    store: Store,
) -> None:
    records = incoming(stream(2))
    batch = records[:10]
    stale = spans(batch, await store.offsets(GROUP))
    await store.apply(GROUP, decode(batch), stale)
    before = await dump(store.engine)
    # The same batch again, from the offsets it was read at: another recorder (a
    # rebalance) got there first; nothing of it is written a second time.
    with pytest.raises(StaleOffsets):
        await store.apply(GROUP, decode(records[:12]), spans(records[:12], {}))
    assert await dump(store.engine) == before


async def test_a_message_published_twice_is_one_row(store: Store) -> None:
    messages = stream(1)
    twice = [*messages[:5], *messages[:5]]  # a pipeline that republished after a restart
    await apply_in_batches(store, incoming(twice), 3)
    assert await count(store, WarningVersion) == 1
    assert await count(store, NotificationRow) == 2


def _consumer() -> Any:
    class Consumer:
        def __init__(self) -> None:
            self.committed: list[dict[TopicPartition, int]] = []

        def assignment(self) -> set[TopicPartition]:
            return {TopicPartition(WARNINGS, 0), TopicPartition(COMMANDS, 0)}

        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            self.committed.append(offsets)

    return Consumer()


class _Record:
    def __init__(self, r: Incoming) -> None:
        self.topic, self.partition, self.offset = r.topic, r.partition, r.offset
        self.key, self.value, self.timestamp = r.key, r.value, r.timestamp_ms
        self.headers = list(r.headers)  # as aiokafka gives them: (name, bytes) pairs


async def test_records_that_are_not_messages_are_kept_counted_and_do_not_stop_the_record(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(CollectorRegistry())
    recorder = Recorder(store, RecorderConfig(bootstrap="unused"), metrics)
    recorder.starts = {TopicPartition(WARNINGS, 0): None, TopicPartition(COMMANDS, 0): None}
    good = incoming(stream(1))[0]
    records = [
        good,
        Incoming(WARNINGS, 0, 1, b"st", b"{not json", good.timestamp_ms),
        Incoming(WARNINGS, 0, 2, b"st", b'{"warning_id": "w"}', good.timestamp_ms),
        Incoming(COMMANDS, 0, 0, b"st", None, good.timestamp_ms),
    ]
    batches = {
        TopicPartition(WARNINGS, 0): [_Record(r) for r in records[:3]],
        TopicPartition(COMMANDS, 0): [_Record(records[3])],
    }
    assert await recorder.record(_consumer(), batches)

    def skipped(topic: str, reason: str) -> float:
        value = metrics.registry.get_sample_value(
            "canhbao_record_skipped_total", {"topic": topic, "reason": reason}
        )
        return value or 0.0

    assert skipped(WARNINGS, "malformed") == 1
    assert skipped(WARNINGS, "invalid") == 1
    assert skipped(COMMANDS, "empty") == 1
    async with store.engine.connect() as conn:
        kept = (
            await conn.execute(select(UnreadableRecord).order_by(UnreadableRecord.offset))
        ).all()
    assert [(r.topic, r.offset, r.value) for r in kept] == [
        (COMMANDS, 0, None),
        (WARNINGS, 1, b"{not json"),
        (WARNINGS, 2, b'{"warning_id": "w"}'),
    ]
    assert "warning_id" in kept[2].reason or "Field required" in kept[2].reason
    assert await count(store, WarningVersion) == 1
    assert await store.offsets(GROUP) == {(WARNINGS, 0): 3, (COMMANDS, 0): 1}
    assert "canhbao.warnings[0]@1 not recorded as a message (malformed" in caplog.text


async def test_the_recorder_refuses_a_database_without_its_schema_and_says_what_to_run(
    tmp_path: Path,
) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(migrate.SchemaError, match="run `canhbao db upgrade`"):
            await store.check_schema()
        assert await migrate.upgrade(store.engine) == (None, migrate.head())
        await store.check_schema()
        # A database a newer canhbao migrated: this one must not write into it.
        async with store.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(migrate.SchemaError, match="newer than this canhbao"):
            await store.check_schema()
    finally:
        await store.close()


async def test_old_evidence_readings_are_purged(store: Store) -> None:
    await apply_in_batches(store, incoming(stream(2)), 100)
    assert await count(store, EvidenceReading) == 6
    purged = await store.purge(datetime(2025, 10, 14, 3, 0, 30, tzinfo=UTC))
    assert purged["evidence_readings"] == 4
    assert await count(store, EvidenceReading) == 2
    assert await count(store, WarningVersion) == 6  # the warnings themselves stay
    assert (await store.purge(datetime.now(UTC) - timedelta(days=30)))["evidence_readings"] == 2
    assert await count(store, KafkaOffset) > 0


async def test_the_migrations_build_exactly_the_tables_the_code_writes(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from recorder.schema import Base

    def differences(conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    async with store.engine.connect() as conn:
        assert await conn.run_sync(differences) == []


async def test_every_migration_upgrades_to_the_head_and_back(store: Store) -> None:
    """From an empty database and from each earlier migration, `canhbao db upgrade`
    reaches this code's schema; each migration can be undone."""
    records = incoming(stream(1))
    for revision in migrate.revisions():
        await migrate.downgrade(store.engine, "base")
        assert await migrate.current(store.engine) is None
        await migrate.upgrade(store.engine, revision)
        assert await migrate.current(store.engine) == revision
        await migrate.upgrade(store.engine)
        await store.check_schema()
        await store.apply(GROUP, decode(records), spans(records, {}))
        assert await count(store, WarningVersion) == 3  # one warning, three states


@pytest.mark.parametrize("batch", [100, 1], ids=["one-batch", "batch-by-batch"])
async def test_a_lifted_silence_keeps_what_was_silenced_by_whom_and_says_who_lifted_it(
    store: Store, batch: int
) -> None:
    from topics.catalogue import CONTROL_SILENCES
    from topics.models import SilenceLift

    messages = [m for m in stream(1) if m[0] == CONTROL_SILENCES]  # set, then lifted
    records = incoming(messages)
    lift = SilenceLift(silence_id="maint-st-2", actor="an.nguyen", reason="trạm đã sửa",
                       at=datetime(2025, 10, 14, 4, 0, tzinfo=UTC))  # fmt: skip
    records[-1] = Incoming(**{**records[-1].__dict__, "headers": (lift.header(),)})
    await apply_in_batches(store, records, batch)
    async with store.engine.connect() as conn:
        s = (await conn.execute(select(SilenceRow))).one()
    assert (s.matchers, s.created_by, s.comment) == (
        ['station="st-2"'],
        "dung.pham",
        "bảo trì trạm",
    )
    assert (s.removed_by, s.removed_at) == ("an.nguyen", lift.at)
