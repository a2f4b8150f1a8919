"""Stage 3: route each warning state (routing tree, inhibition, silences, quiet
hours) into rendered notifications; citizen broadcasts go to approval first. On
grouped routes, states also go to their aggregation group
(``canhbao.group.notifications``, see :mod:`pipeline.worker.stages.group`); only those that
must not wait are sent from here."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.notify import Renderer, plan
from alerting.routes import RoutingConfig, Silence
from pipeline.validate import Refused
from pipeline.worker.stages import Clock, wall_clock
from pipeline.worker.stages.control import read_silence
from pipeline.worker.writers import Writer
from topics.catalogue import CONTROL_SILENCES, WARNINGS
from topics.connection import Kafka
from topics.kafka import DeadLetters, Record, TopicReader
from topics.metrics import Metrics
from topics.models import (
    ApprovalAction,
    ApprovalEvent,
    Channel,
    DeliveryOutcome,
    DeliveryReceipt,
    Warning,
)

log = logging.getLogger(__name__)


class Views:
    """What every routing worker needs whole, whatever partitions it owns: the active
    warnings (for inhibition), the silences, and the newest version of every warning
    (aggregation groups drop members whose newer state went elsewhere). They follow
    their topics from the start with no consumer group; ``ready`` is set once they
    have caught up with what was there at start."""

    def __init__(self, clock: Clock = wall_clock) -> None:
        self.clock = clock
        self.active: dict[str, Warning] = {}
        self.silences: dict[str, Silence] = {}
        self.latest: dict[str, tuple[int, datetime]] = {}
        self.ready = asyncio.Event()

    def apply_warning(self, w: Warning) -> None:
        if w.active and w.level > 0:
            self.active[w.warning_id] = w
        else:
            self.active.pop(w.warning_id, None)
        seen = self.latest.get(w.warning_id)
        if seen is None or w.version > seen[0]:
            self.latest[w.warning_id] = (w.version, self.clock())

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if topic != WARNINGS:
            # A refused silence is skipped here, in every worker, and the silences in
            # force are kept; the control check stage dead-letters it, once.
            silence = read_silence(key, value)
            if isinstance(silence, Refused):
                log.warning("skipping a refused %s record: %s", topic, silence.reason[:500])
            elif silence is None:
                self.silences.pop((key or b"").decode(), None)
            else:
                self.silences[silence.id] = silence
            return
        try:
            self.apply_warning(Warning.model_validate_json(value or b""))
        except ValidationError as exc:
            log.warning("skipping an unreadable %s record: %s", topic, exc)

    async def follow(self, bootstrap: Kafka) -> None:
        """Read both topics to their end (then ``ready``), and follow them until
        cancelled."""

        def apply(r: ConsumerRecord[bytes, bytes]) -> None:
            self.apply(r.topic, r.key, r.value)

        async with TopicReader(bootstrap, [WARNINGS, CONTROL_SILENCES], apply) as reader:
            await reader.catch_up()
            self.ready.set()
            await reader.follow(asyncio.Event())


class RouteStage:
    """One warning state in, its notifications, group entries, suppression receipts
    and broadcast requests out (:func:`alerting.notify.plan` decides)."""

    def __init__(
        self,
        *,
        routing: RoutingConfig,
        directory: Directory,
        audiences: Audiences,
        render: Renderer,
        views: Views,
        notifications: Mapping[Channel, Writer],
        groups: Writer,
        receipts: Writer,
        approvals: Writer,
        dead: DeadLetters,
        metrics: Metrics,
        clock: Clock = wall_clock,
    ) -> None:
        self.routing = routing
        self.directory = directory
        self.audiences = audiences
        self.render = render
        self.views = views
        self.notifications = notifications
        self.groups = groups
        self.receipts = receipts
        self.approvals = approvals
        self.dead = dead
        self.clock = clock
        self.metrics = metrics
        # Each channel's counter, looked up once (a lookup takes a lock and builds its
        # key) when the channel's first notification is routed, as before.
        self._routed: dict[Channel, Any] = {}

    async def handle(self, msg: Record, raw: bytes | None) -> None:
        """Route one warning state; returns once the broker has every output."""
        await self.handle_batch([(msg, raw)])

    async def handle_batch(self, events: Sequence[tuple[Record, bytes | None]]) -> None:
        """Route a batch of warning states in order; returns once the broker has every
        output of the batch (one round trip per batch, not per warning: awaiting each
        warning's outputs before the next left the stage idle half the time in a burst).
        The offsets are committed after this returns, so a crash replays the batch; the
        dispatchers' ledger and the notifications' ids make the replay harmless."""
        sent: list[Any] = []
        for msg, raw in events:
            await self._route(msg, raw or b"", sent)
        for fut in sent:
            await fut

    async def _route(self, msg: Record, raw: bytes, sent: list[Any]) -> None:
        try:
            warning = Warning.model_validate_json(raw)
        except ValidationError as exc:
            await self.dead.reject(msg, raw, "route", f"not a valid warning: {exc}")
            return
        views = self.views
        views.apply_warning(warning)
        now = self.clock()
        p = plan(
            warning, self.routing, self.directory, self.audiences, self.render,
            active=views.active.values(), silences=views.silences.values(),
            now=now,
        )  # fmt: skip
        m = self.metrics
        for note in p.notifications:
            counter = self._routed.get(note.channel)
            if counter is None:
                counter = self._routed[note.channel] = m.notifications_routed.labels(
                    note.channel.value
                )
            counter.inc()
            sent.append(
                await self.notifications[note.channel].send(
                    note.receiver_id.encode(), note.to_bytes()
                )
            )
        for entry in p.grouped:
            if not entry.sent:
                m.notifications_held.labels(entry.channel.value).inc()
            sent.append(await self.groups.send(entry.group_key.encode(), entry.to_bytes()))
        for s in p.suppressed:
            m.notifications_suppressed.labels(s.channel.value).inc()
            receipt = DeliveryReceipt(
                notification_id=s.notification_id, warning_id=warning.warning_id,
                receiver_id=s.receiver_id, channel=s.channel, attempt=1,
                outcome=DeliveryOutcome.SUPPRESSED, error=s.reason, latency_seconds=0,
            )  # fmt: skip
            sent.append(await self.receipts.send(s.notification_id.encode(), receipt.to_bytes()))
        for b in p.broadcasts:
            request = ApprovalEvent(
                event_id=str(uuid.uuid4()), broadcast_id=b.broadcast_id,
                action=ApprovalAction.REQUEST, actor="canhbao", broadcast=b, at=now,
            )  # fmt: skip
            log.warning("broadcast %s waits for two operators", b.broadcast_id)
            sent.append(await self.approvals.send(warning.warning_id.encode(), request.to_bytes()))
