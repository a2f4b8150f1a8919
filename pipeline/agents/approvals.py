"""Stage 3b: citizen broadcasts wait here for two operators, then fan out; they
expire if nobody approves in time (by the wall clock: the operators' real minutes)
and can be cancelled at any moment."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import faust
from pydantic import ValidationError

from alerting import broadcast as rules
from alerting.audiences import Audiences
from alerting.notify import Renderer, cancel_notifications, citizen_notifications
from canhbao.metrics import BROADCASTS
from canhbao.settings import Settings
from pipeline.agents.store import TableStore, json_table
from topics.catalogue import APPROVALS, CLOCK, STATE_BROADCASTS, notifications_topic
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


def register(app: faust.App, settings: Settings, audiences: Audiences, render: Renderer) -> None:
    from pipeline.app import DeadLetters, raw_topic

    n = settings.partitions
    source = app.topic(APPROVALS, CLOCK, key_type=bytes, value_type=bytes, value_serializer="raw")
    outs = {c: raw_topic(app, notifications_topic(c)) for c in Channel}
    dead = DeadLetters(app)
    table = json_table(app, "broadcasts", STATE_BROADCASTS, n)

    def load(store: TableStore, key: str) -> Broadcast | None:
        raw = store.get(key)
        if not raw:
            return None
        return Broadcast.model_validate(raw)

    async def send_all(notes: list[Notification]) -> None:
        futures = [
            await outs[note.channel].send(key=note.receiver_id.encode(), value=note.to_bytes())
            for note in notes
        ]
        for fut in futures:
            await fut

    async def refuse(msg: Any, raw: bytes, reason: str) -> None:
        log.warning("approval refused: %s", reason)
        await dead.reject(msg, raw, "approval", reason)

    async def approve(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            msg = event.message
            raw: bytes = event.value or b""
            store = TableStore(table, msg.partition)
            if msg.topic == CLOCK:
                try:
                    Tick.model_validate_json(raw)
                except ValidationError:
                    continue
                # A tick says when to look, not what time it is for the approvers:
                # `canhbao simulate` ticks in scenario time, hours ahead of the wall
                # clock, and the operators' 30 minutes are real minutes (expires_at
                # is set from the wall clock when the broadcast is requested).
                now = datetime.now(UTC)
                for key in store.own_keys():
                    current = load(store, key)
                    expired = rules.expire(current, now) if current else None
                    if expired is not None:
                        BROADCASTS.labels("expired").inc()
                        log.warning("broadcast %s expired unapproved", key)
                        store[key] = expired.model_dump(mode="json")
                await store.flush()
                continue
            try:
                ev = ApprovalEvent.model_validate_json(raw)
            except ValidationError as exc:
                await refuse(msg, raw, f"not a valid approval event: {exc}")
                continue
            prefix = f"{ev.warning_id}:v"
            siblings = [b for k in store.own_keys() if k.startswith(prefix)
                        if (b := load(store, k)) is not None]  # fmt: skip
            try:
                step = rules.apply(load(store, ev.broadcast_id), ev, siblings)
            except rules.Refused as exc:
                await refuse(msg, raw, str(exc))
                continue
            for older in step.superseded:
                store[older.broadcast_id] = older.model_dump(mode="json")
                BROADCASTS.labels("superseded").inc()
            b = step.broadcast
            if step.send:
                notes = citizen_notifications(b.warning, b.communes, b.channels, audiences, render)
                log.warning("broadcast %s approved by %s: %d messages", b.broadcast_id,
                            " and ".join(b.approvals), len(notes))  # fmt: skip
                await send_all(notes)
            if step.cancel_sent:
                when = ev.at if ev.at.tzinfo else datetime.now(UTC)
                await send_all(cancel_notifications(b, ev.reason, audiences, when))
            # A first approval leaves the broadcast pending: count it as such.
            first_approval = (
                ev.action is ApprovalAction.APPROVE and b.status is BroadcastStatus.PENDING
            )
            BROADCASTS.labels("approval" if first_approval else b.status.value).inc()
            store[b.broadcast_id] = b.model_dump(mode="json")
            await store.flush()

    app.agent(source, name="canhbao.approvals")(approve)
