"""Stage 3c: aggregation groups. Warning states that the route stage held for a group
(``canhbao.group.notifications``, keyed by group key) wait here for the group's timers
(:mod:`alerting.grouping`), and go out as one message per flush: the warning as usual
when it is alone, a digest when there are several, a reminder when nothing changed
for ``repeat_interval``.

The groups live in a changelog-backed Faust table (``canhbao.state.groups``,
compacted, JSON), so a restarted worker rebuilds them before it goes on. Clock ticks
(``canhbao.clock``, one per partition, every ``tick_interval``) flush them by time
when no warning arrives; that interval is also the timers' resolution. As in
:mod:`pipeline.worker.stages.evaluate`, outputs are sent and acknowledged before the state is
written: a crash in between sends the same flush again under the same notification
id, which the dispatcher's ledger drops.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from alerting import grouping
from alerting.notify import FlushRenderer, flush_notification, hold_reason
from alerting.routes import RoutingConfig
from pipeline.worker.stages import Clock, wall_clock
from pipeline.worker.stages.route import Views
from pipeline.worker.store import TableStore
from pipeline.worker.writers import Writer
from topics.catalogue import CLOCK
from topics.kafka import DeadLetters, Record
from topics.metrics import Metrics
from topics.models import Channel, GroupEntry, Warning

log = logging.getLogger(__name__)
WAKE = "_wake"  # grouping.next_wake, so that a tick skips the groups with nothing to do


def stored_group(value: dict[str, Any]) -> grouping.Group:
    """A group as stored in ``canhbao.state.groups`` (without the partition mark),
    less the wake-up time kept beside it."""
    return grouping.Group.model_validate({k: v for k, v in value.items() if k != WAKE})


class GroupStore:
    """One partition's groups, typed, on the shared :class:`TableStore` (partition
    bookkeeping, tombstones, a changelog flush that waits for the broker)."""

    def __init__(self, table: Any, partition: int, changelog: Writer) -> None:
        self.store = TableStore(table, partition, changelog)

    def get(self, key: str) -> grouping.Group | None:
        raw = self.store.get(key)
        if not raw:
            return None
        try:
            return stored_group(raw)
        except ValidationError as exc:
            log.error("group %s is unreadable and starts afresh: %s", key, exc)
            return None

    def put(self, key: str, group: grouping.Group | None) -> None:
        if group is None:
            if key in self.store:
                del self.store[key]
            return
        wake = grouping.next_wake(group)
        value = {
            **group.model_dump(mode="json"),
            WAKE: None if wake is None else wake.isoformat(),
        }
        if self.store.get(key) == value:
            return  # a tick that changed nothing writes nothing
        self.store[key] = value

    def due_keys(self, now: datetime) -> list[str]:
        """This partition's groups whose wake-up time has come."""
        return [
            k
            for k, v in self.store.own_items()
            if v.get(WAKE) is not None and datetime.fromisoformat(v[WAKE]) <= now
        ]

    async def flush(self) -> None:
        await self.store.flush()


class GroupStage:
    """Group entries and clock ticks in (``canhbao.group.notifications``,
    ``canhbao.clock``), one notification per flush out; the groups in ``table``
    (Faust's, or a dict with ``data`` in tests), written to ``changelog``."""

    def __init__(
        self,
        *,
        routing: RoutingConfig,
        render: FlushRenderer,
        views: Views,
        table: Any,
        changelog: Writer,
        notifications: Mapping[Channel, Writer],
        dead: DeadLetters,
        metrics: Metrics,
        clock: Clock = wall_clock,
    ) -> None:
        self.routing = routing
        self.render = render
        self.views = views
        self.table = table
        self.changelog = changelog
        self.notifications = notifications
        self.dead = dead
        self.clock = clock
        self.metrics = metrics

    def held(self, channel: Channel, now: datetime) -> grouping.Held:
        """A reminder leaves out what is silenced, inhibited or in quiet hours now."""
        views = self.views

        def check(w: Warning) -> bool:
            reason = hold_reason(self.routing, w, channel, active=list(views.active.values()),
                                 silences=list(views.silences.values()), now=now)  # fmt: skip
            return reason is not None

        return check

    async def step(
        self, store: GroupStore, key: str, entry: GroupEntry | None, now: datetime
    ) -> None:
        """One group: take ``entry`` (None on a tick), settle, flush when due."""
        m = self.metrics
        views = self.views
        group = store.get(key)
        if entry is not None:
            group, outcome = grouping.receive(group, entry, now)
            if outcome == "flap":
                m.group_members_left.labels("flap").inc()
                log.info("%s raised and cleared before %s heard of it: not announced",
                         entry.warning.warning_id, entry.receiver_id)  # fmt: skip
        if group is None:
            return
        settled, left = grouping.settle(group, now, views.latest)
        for _ in left:
            m.group_members_left.labels("superseded").inc()
        if settled is not None:
            flush = grouping.due(
                settled, now, latest=views.latest, reminders=views.ready.is_set(),
                held=self.held(settled.channel, now),
            )  # fmt: skip
            if flush is not None:
                note = flush_notification(settled, flush, self.render)
                writer = self.notifications[note.channel]
                await (await writer.send(note.receiver_id.encode(), note.to_bytes()))
                m.notifications_routed.labels(note.channel.value).inc()
                form = "digest" if len(flush.warnings) > 1 else "single"
                m.group_flushes.labels(flush.kind, form).inc()
                log.info("%s %s to %s: %d warning(s)", settled.id, flush.kind,
                         settled.receiver_id, len(flush.warnings))  # fmt: skip
                settled = grouping.flushed(settled, flush, now)
        store.put(key, settled)

    async def handle(self, msg: Record, raw: bytes | None) -> None:
        """A group entry or a tick; the groups' changes are on the changelog on return."""
        raw = raw or b""
        store = GroupStore(self.table, msg.partition, self.changelog)
        now = self.clock()
        if msg.topic == CLOCK:
            for key in store.due_keys(now):
                await self.step(store, key, None, now)
        else:
            try:
                entry = GroupEntry.model_validate_json(raw)
            except ValidationError as exc:
                await self.dead.reject(msg, raw, "group", f"not a valid group entry: {exc}")
                return
            await self.step(store, entry.group_key, entry, now)
        await store.flush()
