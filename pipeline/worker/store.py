"""A Faust table as a key/value store whose writes are durable before an event is acked.

The table's local data is written through :mod:`pipeline.worker.faust_fixes` and its
changelog through a :class:`~pipeline.worker.writers.Writer` passed in: in tests, a
dict with a ``data`` attribute and a memory writer stand for both."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson

from pipeline.state import is_quality_key
from pipeline.worker.faust_fixes import table_items, table_pop, table_put
from pipeline.worker.writers import Writer

PARTITION = "_p"


def encode_key(key: str) -> bytes:
    """A state key as the changelog has always carried it (Faust's JSON codec before
    orjson: ASCII, non-ASCII escaped). Compaction keeps the last record per key's
    bytes, so they must not change from one version of the worker to the next."""
    return json.dumps(key).encode()


def encode_value(value: Any) -> bytes:
    """A state value for the changelog: orjson, as Faust's JSON codec decodes it on
    recovery. The standard library's encoder was the worker's largest single cost
    after the engine in the profile of a worker draining a backlog (two values per
    reading, about 15 µs each)."""
    return orjson.dumps(value)


def without_bookkeeping(value: dict[str, Any]) -> dict[str, Any]:
    """A stored value as the engine wrote it (the changelog also carries ``_p``)."""
    return {k: v for k, v in value.items() if k != PARTITION}


class TableStore(MutableMapping[str, Any]):
    """The Faust table seen as the engine's store; each value remembers the
    partition it was written from, so a tick only touches its own partition.

    Changelog writes are collected and ``flush`` waits until the broker has them:
    the agent calls it before moving to the next event, so an offset is never
    committed for an event whose state change could still be lost. The quality
    gate's state (``q|``: "this reading was seen") is written last: if a crash
    cuts the sequence short, the replayed reading is evaluated again instead of
    being set aside as a duplicate of a reading whose effects were lost."""

    def __init__(self, table: Any, partition: int, changelog: Writer) -> None:
        self.table = table
        self.partition = partition
        self.dirty: dict[str, Any] = {}  # None: deleted (a tombstone for compaction)
        self.out = changelog

    def __getitem__(self, key: str) -> Any:
        value = self.table.get(key)
        if value is None:
            raise KeyError(key)
        return without_bookkeeping(value)

    def __setitem__(self, key: str, value: Any) -> None:
        # A copy: the caller may keep using its dict, without our bookkeeping in it.
        stored = {**value, PARTITION: self.partition}
        table_put(self.table, key, stored, self.partition)
        self.dirty[key] = stored

    async def flush(self) -> None:
        await TableStore.flush_together([self])

    @staticmethod
    async def flush_together(stores: list[TableStore], prefix: str = "") -> None:
        """Write the changes of several partitions' stores (only the keys starting
        with ``prefix``, if given): all other state first, the quality marks
        (``q|``) of every partition last."""
        writes: list[tuple[bool, TableStore, str, Any]] = []
        for store in stores:
            dirty = {k: v for k, v in store.dirty.items() if k.startswith(prefix)}
            for k in dirty:
                del store.dirty[k]
            writes += [(is_quality_key(k), store, k, v) for k, v in dirty.items()]
        writes.sort(key=lambda w: w[0])
        # Sent now, not through Faust's send_soon buffer (whose flush can return
        # early, and which a stream that waits on it may never see drained), and
        # encoded as the changelog topic's JSON serializer would, so a restarting
        # worker's table reads them back.
        pending: list[Any] = []
        marks_from = next((i for i, w in enumerate(writes) if w[0]), len(writes))
        for i, (_, store, k, v) in enumerate(writes):
            if i == marks_from:
                # The marks may only land once the rest is acknowledged: Kafka keeps
                # order within a partition, not across the changelog's partitions.
                for fut in pending:
                    await fut
                pending = []
            value = None if v is None else encode_value(v)
            pending.append(await store.out.send(encode_key(k), value, store.partition))
        for fut in pending:
            await fut

    def __delitem__(self, key: str) -> None:
        # Like a write: in memory now, a tombstone on the changelog at ``flush``.
        if not table_pop(self.table, key):
            raise KeyError(key)
        self.dirty[key] = None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.table.keys()))

    def __len__(self) -> int:
        return len(self.table)

    def own_items(self) -> list[tuple[str, dict[str, Any]]]:
        """This partition's entries, as stored (bookkeeping included)."""
        items = table_items(self.table)
        return [(k, v) for k, v in items if v and v.get(PARTITION) == self.partition]

    def own_keys(self) -> list[str]:
        return [k for k, _ in self.own_items()]


def json_table(app: Any, name: str, changelog: str, partitions: int) -> Any:
    """A Faust table whose changelog (compacted) holds JSON keys and values: what the
    stores write, and what a restarted worker decodes the same way on recovery."""
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        changelog_topic=app.topic(
            changelog,
            partitions=partitions,
            compacting=True,
            deleting=False,
            key_type=str,
            key_serializer="json",
            value_serializer="json",
            internal=True,
            # Not a stream: the worker writes it and reads it back only in recovery,
            # never acking what it reads (as Faust's own changelogs). With acks,
            # Faust's stall check took it for a stream that never started
            # (pipeline.worker.faust_fixes, item 5).
            acks=False,
        ),
    )
