"""Stage 3: route each warning state (routing tree, inhibition, silences, quiet
hours) into rendered notifications; citizen broadcasts go to approval first."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.notify import Renderer, plan
from alerting.routes import Silence, load_routing
from canhbao.metrics import MESSAGES_REJECTED, NOTIFICATIONS_ROUTED, NOTIFICATIONS_SUPPRESSED
from canhbao.settings import Settings
from topics.catalogue import (
    APPROVALS,
    CONTROL_SILENCES,
    DEADLETTER,
    RECEIPTS,
    WARNINGS,
    notifications_topic,
)
from topics.models import (
    ApprovalAction,
    ApprovalEvent,
    Channel,
    DeadLetter,
    DeliveryOutcome,
    DeliveryReceipt,
    Warning,
)

log = logging.getLogger(__name__)


class Views:
    """What every routing worker needs whole, whatever partitions it owns: the active
    warnings (for inhibition) and the silences. Both follow their topics from the
    start with no consumer group."""

    def __init__(self) -> None:
        self.active: dict[str, Warning] = {}
        self.silences: dict[str, Silence] = {}

    def apply_warning(self, w: Warning) -> None:
        if w.active and w.level > 0:
            self.active[w.warning_id] = w
        else:
            self.active.pop(w.warning_id, None)

    async def follow(self, bootstrap: str) -> None:
        consumer = AIOKafkaConsumer(
            WARNINGS, CONTROL_SILENCES, bootstrap_servers=bootstrap, group_id=None,
            auto_offset_reset="earliest",
        )  # fmt: skip
        await consumer.start()
        try:
            async for record in consumer:
                try:
                    if record.topic == WARNINGS:
                        self.apply_warning(Warning.model_validate_json(record.value or b""))
                    elif record.value is None:
                        self.silences.pop((record.key or b"").decode(), None)
                    else:
                        s = Silence.model_validate_json(record.value)
                        self.silences[s.id] = s
                except ValidationError as exc:
                    log.warning("skipping an unreadable %s record: %s", record.topic, exc)
        finally:
            await consumer.stop()


def register(
    app: faust.App,
    settings: Settings,
    directory: Directory,
    audiences: Audiences,
    render: Renderer,
    bootstrap: str,
) -> None:
    from pipeline.app import raw_topic

    config = load_routing(settings.routes_path)
    views = Views()
    source = raw_topic(app, WARNINGS)
    outs = {c: raw_topic(app, notifications_topic(c)) for c in Channel}
    receipts = raw_topic(app, RECEIPTS)
    approvals = raw_topic(app, APPROVALS)
    dead = raw_topic(app, DEADLETTER, partitions=1)

    async def route(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            raw: bytes = event.value or b""
            try:
                warning = Warning.model_validate_json(raw)
            except ValidationError as exc:
                msg = event.message
                MESSAGES_REJECTED.labels(msg.topic, "route").inc()
                await dead.send(
                    key=msg.topic.encode(),
                    value=DeadLetter(source_topic=msg.topic, partition=msg.partition,
                                     offset=msg.offset, original=raw, stage="route",
                                     reason=f"not a valid warning: {exc}").to_bytes(),
                )  # fmt: skip
                continue
            views.apply_warning(warning)
            now = datetime.now(UTC)
            p = plan(
                warning, config, directory, audiences, render,
                active=list(views.active.values()), silences=list(views.silences.values()),
                now=now,
            )  # fmt: skip
            sent: list[Any] = []
            for note in p.notifications:
                NOTIFICATIONS_ROUTED.labels(note.channel.value).inc()
                sent.append(
                    await outs[note.channel].send(
                        key=note.receiver_id.encode(), value=note.to_bytes()
                    )
                )
            for s in p.suppressed:
                NOTIFICATIONS_SUPPRESSED.labels(s.channel.value).inc()
                receipt = DeliveryReceipt(
                    notification_id=s.notification_id, warning_id=warning.warning_id,
                    receiver_id=s.receiver_id, channel=s.channel, attempt=1,
                    outcome=DeliveryOutcome.SUPPRESSED, error=s.reason, latency_seconds=0,
                )  # fmt: skip
                sent.append(
                    await receipts.send(key=s.notification_id.encode(), value=receipt.to_bytes())
                )
            for b in p.broadcasts:
                request = ApprovalEvent(
                    event_id=str(uuid.uuid4()), broadcast_id=b.broadcast_id,
                    action=ApprovalAction.REQUEST, actor="canhbao", broadcast=b, at=now,
                )  # fmt: skip
                log.warning("broadcast %s waits for two operators", b.broadcast_id)
                sent.append(
                    await approvals.send(key=warning.warning_id.encode(), value=request.to_bytes())
                )
            for fut in sent:
                await fut

    app.agent(source, name="canhbao.route")(route)

    async def follow_views() -> None:
        await views.follow(bootstrap)

    app.task(follow_views)
