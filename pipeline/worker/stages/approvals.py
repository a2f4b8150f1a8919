"""Stage 3b: citizen broadcasts wait here for two operators, then fan out; they
expire if nobody approves in time (by the wall clock: the operators' real minutes)
and can be cancelled at any moment."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from alerting import broadcast as rules
from alerting.audiences import Audiences
from alerting.notify import Renderer, cancel_notifications, citizen_notifications
from pipeline.worker.stages import Clock, wall_clock
from pipeline.worker.store import TableStore
from pipeline.worker.writers import Writer
from topics.catalogue import CLOCK
from topics.ids import is_broadcast_of
from topics.kafka import DeadLetters, Record
from topics.metrics import Metrics
from topics.models import (
    ApprovalAction,
    ApprovalEvent,
    Broadcast,
    BroadcastStatus,
    Channel,
    Notification,
    Tick,
)

log = logging.getLogger(__name__)


def load(store: TableStore, key: str) -> Broadcast | None:
    raw = store.get(key)
    if not raw:
        return None
    return Broadcast.model_validate(raw)


class ApprovalStage:
    """Approval events and clock ticks in (``canhbao.approvals``, ``canhbao.clock``);
    the broadcasts in ``table`` (Faust's, or a dict with ``data`` in tests), written
    to ``changelog``; the citizens' messages out once two operators approved."""

    def __init__(
        self,
        *,
        audiences: Audiences,
        render: Renderer,
        table: Any,
        changelog: Writer,
        notifications: Mapping[Channel, Writer],
        dead: DeadLetters,
        metrics: Metrics,
        clock: Clock = wall_clock,
    ) -> None:
        self.audiences = audiences
        self.render = render
        self.table = table
        self.changelog = changelog
        self.notifications = notifications
        self.dead = dead
        self.clock = clock
        self.broadcasts = metrics.broadcasts

    async def send_all(self, notes: list[Notification]) -> None:
        futures = [
            await self.notifications[note.channel].send(note.receiver_id.encode(), note.to_bytes())
            for note in notes
        ]
        for fut in futures:
            await fut

    async def refuse(self, msg: Record, raw: bytes, reason: str) -> None:
        log.warning("approval refused: %s", reason)
        await self.dead.reject(msg, raw, "approval", reason)

    async def handle(self, msg: Record, raw: bytes | None) -> None:
        """One approval event or tick; the broadcasts' changes are on the changelog
        on return."""
        raw = raw or b""
        store = TableStore(self.table, msg.partition, self.changelog)
        if msg.topic == CLOCK:
            await self.expire(store, raw)
            return
        try:
            ev = ApprovalEvent.model_validate_json(raw)
        except ValidationError as exc:
            await self.refuse(msg, raw, f"not a valid approval event: {exc}")
            return
        siblings = [b for k in store.own_keys() if is_broadcast_of(k, ev.warning_id)
                    if (b := load(store, k)) is not None]  # fmt: skip
        try:
            step = rules.apply(load(store, ev.broadcast_id), ev, siblings)
        except rules.Refused as exc:
            await self.refuse(msg, raw, str(exc))
            return
        for older in step.superseded:
            store[older.broadcast_id] = older.model_dump(mode="json")
            self.broadcasts.labels("superseded").inc()
        b = step.broadcast
        if step.send:
            notes = citizen_notifications(
                b.warning, b.communes, b.channels, self.audiences, self.render
            )
            log.warning("broadcast %s approved by %s: %d messages", b.broadcast_id,
                        " and ".join(b.approvals), len(notes))  # fmt: skip
            await self.send_all(notes)
        if step.cancel_sent:
            when = ev.at if ev.at.tzinfo else self.clock()
            await self.send_all(cancel_notifications(b, ev.reason, self.audiences, when))
        # A first approval leaves the broadcast pending: count it as such.
        first_approval = ev.action is ApprovalAction.APPROVE and b.status is BroadcastStatus.PENDING
        self.broadcasts.labels("approval" if first_approval else b.status.value).inc()
        store[b.broadcast_id] = b.model_dump(mode="json")
        await store.flush()

    async def expire(self, store: TableStore, raw: bytes) -> None:
        """A tick: expire this partition's broadcasts nobody approved in time."""
        try:
            Tick.model_validate_json(raw)
        except ValidationError:
            return
        # A tick says when to look, not what time it is for the approvers:
        # `canhbao simulate` ticks in scenario time, hours ahead of the wall
        # clock, and the operators' 30 minutes are real minutes (expires_at
        # is set from the wall clock when the broadcast is requested).
        now = self.clock()
        for key in store.own_keys():
            current = load(store, key)
            expired = rules.expire(current, now) if current else None
            if expired is not None:
                self.broadcasts.labels("expired").inc()
                log.warning("broadcast %s expired unapproved", key)
                store[key] = expired.model_dump(mode="json")
        await store.flush()
