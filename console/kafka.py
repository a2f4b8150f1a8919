"""The console's Kafka side: readers that keep the board current, and the writer of
operators' commands and approval events (the same topics and keys the CLI uses)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError

from alerting.routes import Silence
from console.board import Board
from topics.catalogue import (
    APPROVALS,
    COMMANDS,
    CONTROL_SILENCES,
    STATE_BROADCASTS,
    STATUS,
    WARNINGS,
)
from topics.connection import Kafka, client_kwargs
from topics.kafka import TopicReader
from topics.models import (
    ApprovalAction,
    ApprovalEvent,
    Broadcast,
    Command,
    ServiceStatus,
    SilenceLift,
    Warning,
)

log = logging.getLogger(__name__)

# The Faust table's changelog stores each value with the partition it came from.
_BOOKKEEPING = "_p"


class KafkaWriter:
    """Commands to ``canhbao.commands`` keyed by the warning's subject, approval events
    to ``canhbao.approvals`` keyed by the warning id; each waits for the broker."""

    def __init__(self, bootstrap: Kafka) -> None:
        self.producer = AIOKafkaProducer(**client_kwargs(bootstrap), acks="all")

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def command(self, command: Command) -> None:
        await self.producer.send_and_wait(
            COMMANDS, command.to_bytes(), key=command.subject.encode()
        )

    async def approval(self, event: ApprovalEvent) -> None:
        await self.producer.send_and_wait(
            APPROVALS, event.to_bytes(), key=event.warning_id.encode()
        )

    async def silence(self, silence: Silence) -> None:
        """The message ``canhbao alerts silence`` writes, keyed by the silence id."""
        await self.producer.send_and_wait(
            CONTROL_SILENCES, silence.model_dump_json().encode(), key=silence.id.encode()
        )

    async def unsilence(self, silence_id: str, actor: str) -> None:
        """The tombstone ``canhbao alerts unsilence`` writes, with the same
        ``canhbao-lift`` header naming the account (a tombstone has no value to hold
        it), so the record's audit log says who lifted it."""
        lift = SilenceLift(silence_id=silence_id, actor=actor, reason="lifted in the console")
        await self.producer.send_and_wait(
            CONTROL_SILENCES, None, key=silence_id.encode(), headers=[lift.header()]
        )


def _warning(board: Board, r: ConsumerRecord[Any, Any]) -> None:
    if r.value is None:
        return
    try:
        board.apply_warning(Warning.model_validate_json(r.value))
    except ValidationError as exc:
        # The worker dead-letters what it cannot read; the console only skips it.
        log.warning("%s@%d:%d is not a warning this console reads: %s",
                    r.topic, r.partition, r.offset, exc.errors()[:1])  # fmt: skip


def _broadcast(board: Board, r: ConsumerRecord[Any, Any]) -> None:
    key = json.loads(r.key) if r.key else ""
    if r.value is None:
        board.broadcasts.pop(key, None)
        return
    try:
        value = {k: v for k, v in json.loads(r.value).items() if k != _BOOKKEEPING}
        b = Broadcast.model_validate(value)
    except (ValueError, ValidationError) as exc:
        log.warning("%s: broadcast %s is unreadable: %s", r.topic, key, exc)
        return
    board.broadcasts[b.broadcast_id] = b


def _approval(board: Board, r: ConsumerRecord[Any, Any]) -> None:
    if r.value is None:
        return
    try:
        event = ApprovalEvent.model_validate_json(r.value)
    except ValidationError:
        return  # the approvals stage dead-letters it
    if event.action is ApprovalAction.REQUEST:
        board.requesters.setdefault(event.broadcast_id, event.actor)


def _silence(board: Board, r: ConsumerRecord[Any, Any]) -> None:
    sid = (r.key or b"").decode("utf-8", "replace")
    at = datetime.fromtimestamp(r.timestamp / 1000, UTC)
    if r.value is None:
        try:
            lift = SilenceLift.from_headers(list(r.headers or ()))
        except ValidationError:
            lift = None  # the tombstone still lifts the silence, by nobody on record
        board.apply_silence(sid, None, at, lift.actor if lift else None)
        return
    try:
        board.apply_silence(sid, Silence.model_validate_json(r.value), at)
    except ValidationError as exc:
        # The route stage reads the same topic and says so too; the console skips it.
        log.warning("%s: silence %s is unreadable: %s", r.topic, sid, exc.errors()[:1])


def _status(board: Board, r: ConsumerRecord[Any, Any]) -> None:
    key = (r.key or b"").decode("utf-8", "replace")
    if r.value is None:  # the service stopped
        board.statuses.pop(key, None)
        return
    try:
        board.statuses[key] = ServiceStatus.model_validate_json(r.value)
    except ValidationError as exc:
        log.warning("%s: status %s is unreadable: %s", r.topic, key, exc.errors()[:1])


class Feeds:
    """Reads the warnings, the broadcasts' state and the approval requests from their
    beginning (the latest state of each), then follows them into ``board``."""

    def __init__(self, bootstrap: Kafka, board: Board) -> None:
        self.readers = [
            TopicReader(bootstrap, WARNINGS, lambda r: _warning(board, r)),
            TopicReader(bootstrap, STATE_BROADCASTS, lambda r: _broadcast(board, r)),
            TopicReader(bootstrap, APPROVALS, lambda r: _approval(board, r)),
            TopicReader(bootstrap, CONTROL_SILENCES, lambda r: _silence(board, r)),
            TopicReader(bootstrap, STATUS, lambda r: _status(board, r)),
        ]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, catch_up_within: float = 30.0) -> None:
        for reader in self.readers:
            await reader.__aenter__()
        for reader in self.readers:
            if not await reader.catch_up(within=catch_up_within):
                log.warning("%s: not read to its end within %.0f s; following it anyway",
                            reader.topic, catch_up_within)  # fmt: skip
        self._tasks = [asyncio.create_task(self._follow(r)) for r in self.readers]

    async def _follow(self, reader: TopicReader) -> None:
        """Follow ``reader`` until stopped; a broker error is logged and the reading
        resumes where it was (the consumer keeps its position), never given up: a
        console that silently stopped following would show a stale picture as live."""
        while not self._stop.is_set():
            try:
                await reader.follow(self._stop)
            except Exception:
                log.exception("%s: reading failed; resuming in 1 s", reader.topic)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for reader in self.readers:
            await reader.__aexit__(None, None, None)
