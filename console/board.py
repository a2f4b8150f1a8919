"""What the console knows of the pipeline, fed from Kafka: the latest state of each
warning, each broadcast's state and who requested it. Pure: the Kafka readers
(``console.kafka``) and the tests feed it alike."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from alerting.routes import Silence
from console.silences import Entry
from pipeline.lifecycle import is_active
from topics.models import (
    Broadcast,
    BroadcastStatus,
    Domain,
    LifecycleStatus,
    Phase,
    ServiceStatus,
    Warning,
)


@dataclass(frozen=True)
class Filter:
    """The stream's filters, from a page's query string. ``status`` is ``active`` (the
    default: raised and not closed nor cleared), ``all`` or one lifecycle status."""

    domain: Domain | None = None
    min_level: int = 0
    status: str = "active"
    phase: Phase | None = None
    area: str | None = None  # a commune code (the area map links here)

    @classmethod
    def parse(cls, query: dict[str, str]) -> Filter:
        """A filter from query parameters; a value that is none of the choices is ignored
        (a stale bookmark still shows the stream)."""
        domain = query.get("domain", "")
        level = query.get("level", "")
        status = query.get("status", "active")
        phase = query.get("phase", "")
        statuses = {"active", "all", *(s.value for s in LifecycleStatus)}
        return cls(
            domain=Domain(domain) if domain in {d.value for d in Domain} else None,
            min_level=int(level) if level in {"1", "2", "3", "4", "5"} else 0,
            status=status if status in statuses else "active",
            phase=Phase(int(phase)) if phase in {"1", "2", "3"} else None,
            area=query.get("area") or None,
        )

    def matches(self, w: Warning) -> bool:
        if self.domain is not None and w.domain is not self.domain:
            return False
        if w.level < self.min_level:
            return False
        if self.phase is not None and w.phase is not self.phase:
            return False
        if self.area is not None and all(a.code != self.area for a in w.areas):
            return False
        if self.status == "active":
            return is_active(w)
        return self.status == "all" or w.status.value == self.status

    def query(self) -> dict[str, str]:
        q = {"status": self.status}
        if self.domain is not None:
            q["domain"] = self.domain.value
        if self.min_level:
            q["level"] = str(self.min_level)
        if self.phase is not None:
            q["phase"] = str(int(self.phase))
        if self.area is not None:
            q["area"] = self.area
        return q


def _order(w: Warning) -> tuple[int, float]:
    # Highest level first, then the most recently changed.
    return (-w.level, -w.updated_at.timestamp())


@dataclass
class Board:
    warnings: dict[str, Warning] = field(default_factory=dict)
    broadcasts: dict[str, Broadcast] = field(default_factory=dict)
    # broadcast id -> the actor of its request (the pipeline's "canhbao", or a person)
    requesters: dict[str, str] = field(default_factory=dict)
    # silence id -> the silence (canhbao.control.silences), kept after it is lifted
    silences: dict[str, Entry] = field(default_factory=dict)
    # "service:instance" -> what a running worker or dispatcher last said of itself
    statuses: dict[str, ServiceStatus] = field(default_factory=dict)
    # Each state kept is numbered: a page says up to which number it showed, and its
    # live stream starts with what came after (a state that arrives between the page
    # and its stream would otherwise show only on the next reload). The epoch tells a
    # number of this process from one of a console since restarted.
    seq: int = 0
    epoch: str = field(default_factory=lambda: secrets.token_hex(4))
    _seqs: dict[str, int] = field(default_factory=dict)
    _listeners: set[Callable[[int, Warning], None]] = field(default_factory=set)

    def apply_warning(self, w: Warning) -> bool:
        """Keep ``w`` if it is newer than what is known of its warning; tell the
        listeners. False for an older or repeated state (a replay, a copy)."""
        known = self.warnings.get(w.warning_id)
        if known is not None and known.version >= w.version:
            return False
        self.seq += 1
        self.warnings[w.warning_id] = w
        self._seqs[w.warning_id] = self.seq
        for listener in list(self._listeners):
            listener(self.seq, w)
        return True

    def cursor(self) -> str:
        """Where the board stands now, for a page to hand to its live stream."""
        return f"{self.epoch}-{self.seq}"

    def changed_since(self, cursor: str | None) -> list[tuple[int, Warning]]:
        """The states kept after ``cursor`` (numbered, oldest first): every state
        when the cursor is of another process or unreadable, none without one."""
        if not cursor:
            return []
        epoch, _, number = cursor.rpartition("-")
        after = int(number) if epoch == self.epoch and number.isdigit() else 0
        changed = [(n, self.warnings[wid]) for wid, n in self._seqs.items() if n > after]
        return sorted(changed, key=lambda item: item[0])

    def apply_silence(
        self, sid: str, silence: Silence | None, at: datetime, actor: str | None = None
    ) -> None:
        """A silence set (or changed), or lifted by a tombstone logged ``at`` (by
        ``actor`` when the tombstone names one)."""
        if silence is not None:
            self.silences[sid] = Entry(silence)
        elif (known := self.silences.get(sid)) is not None and known.lifted_at is None:
            self.silences[sid] = Entry(known.silence, lifted_at=at, lifted_by=actor)

    def select(self, f: Filter) -> list[Warning]:
        return sorted((w for w in self.warnings.values() if f.matches(w)), key=_order)

    def listen(self) -> Listener:
        return Listener(self)

    def pending(self) -> list[Broadcast]:
        found = (b for b in self.broadcasts.values() if b.status is BroadcastStatus.PENDING)
        return sorted(found, key=lambda b: b.expires_at)

    def others(self) -> list[Broadcast]:
        found = (b for b in self.broadcasts.values() if b.status is not BroadcastStatus.PENDING)
        return sorted(found, key=lambda b: b.requested_at, reverse=True)


class Listener:
    """The warnings that change from now on (each with its number on the board), for
    one server-sent-event stream."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.queue: asyncio.Queue[tuple[int, Warning] | None] = asyncio.Queue(maxsize=10_000)

    def __enter__(self) -> Listener:
        self.board._listeners.add(self._put)
        return self

    def __exit__(self, *exc: object) -> None:
        self.board._listeners.discard(self._put)

    def _put(self, seq: int, w: Warning) -> None:
        # A browser that does not read is dropped rather than let it hold memory.
        if self.queue.full():
            self.close()
        else:
            self.queue.put_nowait((seq, w))

    def close(self) -> None:
        self.board._listeners.discard(self._put)
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


def approval_refusal(account: str, b: Broadcast, requester: str | None) -> str | None:
    """Why ``account`` may not approve ``b`` (an i18n key), or None when it may: the
    account that requested a broadcast never approves it, and one account counts once
    (the pipeline's own rule, alerting.broadcast, needs two different approvers)."""
    if requester is not None and requester == account:
        return "own_request"
    if account in b.approvals:
        return "already_approved"
    return None
