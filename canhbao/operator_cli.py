"""Operators' commands: approve or cancel a citizen broadcast, list pending ones,
silence noise for a while. Every command records who did it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError

from alerting import grouping
from alerting.routes import Silence
from alerting.templates import VIETNAM
from canhbao.settings import get_settings
from pipeline.worker.stages.group import stored_group
from pipeline.worker.store import without_bookkeeping
from topics.catalogue import (
    APPROVALS,
    CONTROL_SILENCES,
    STATE_BROADCASTS,
    STATE_EVALUATE,
    STATE_GROUPS,
)
from topics.connection import Kafka, KafkaConnection, client_kwargs
from topics.durations import parse_duration
from topics.errors import field_errors
from topics.kafka import TopicReader
from topics.models import ApprovalAction, ApprovalEvent, Broadcast, SilenceLift, Warning

T = TypeVar("T")


def _bootstrap() -> KafkaConnection | None:
    settings = get_settings()
    if not settings.kafka_bootstrap:
        print("needs CANHBAO_KAFKA_BOOTSTRAP: the cluster the pipeline runs on", file=sys.stderr)
        return None
    return settings.kafka_connection()


async def _send(
    bootstrap: Kafka,
    topic: str,
    key: bytes,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(**client_kwargs(bootstrap), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


class StateReader(Generic[T]):
    """Follows a table's compacted changelog: the latest value of each key (a deleted
    key disappears). ``parse`` turns a stored value into ``T``; an unreadable one is
    reported and skipped, never fatal."""

    def __init__(self, bootstrap: Kafka, topic: str, parse: Callable[[dict[str, Any]], T]) -> None:
        self.reader = TopicReader(bootstrap, topic, self._apply)
        self.topic = topic
        self.parse = parse
        self.states: dict[str, T] = {}

    async def __aenter__(self) -> StateReader[T]:
        await self.reader.__aenter__()
        await self.reader.catch_up(within=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.reader.__aexit__(*exc)

    async def poll(self, seconds: float) -> None:
        """Read what arrived since the last call (waiting up to ``seconds``)."""
        await self.reader.poll(seconds)

    def _apply(self, r: ConsumerRecord[bytes, bytes]) -> None:
        key = json.loads(r.key) if r.key else ""
        if r.value is None:
            self.states.pop(key, None)
            return
        try:
            self.states[key] = self.parse(without_bookkeeping(json.loads(r.value)))
        except (ValueError, ValidationError) as exc:
            print(f"{self.topic}: {key} is unreadable: {exc}", file=sys.stderr)


def broadcast_reader(bootstrap: Kafka) -> StateReader[Broadcast]:
    """The broadcasts' changelog: the latest state of each one, by broadcast id."""
    return StateReader(bootstrap, STATE_BROADCASTS, Broadcast.model_validate)


async def states(
    bootstrap: Kafka, topic: str, parse: Callable[[dict[str, Any]], T]
) -> dict[str, T]:
    """The latest value of every key of a table's changelog."""
    async with StateReader(bootstrap, topic, parse) as reader:
        return reader.states


def _show(lines: list[str], empty: str) -> int:
    print("\n".join(lines) if lines else empty)
    return 0


def _describe(b: Broadcast) -> str:
    w = b.warning
    who = ", ".join(b.approvals) or "nobody yet"
    return (f"{b.broadcast_id}  {b.status.value:<10} {w.hazard} level {w.level_name or w.level} "
            f"[{w.severity.value}] communes {', '.join(b.communes)} via "
            f"{', '.join(c.value for c in b.channels)}; approved by {who}; "
            f"expires {b.expires_at.isoformat()}")  # fmt: skip


CLI_APPROVAL_REFUSED = (
    "canhbao alerts approve: refused: approving a citizen broadcast from the command line "
    "is off, because --actor is a name anyone can type and the two-person rule needs two "
    "real accounts. Approve it in the operator console (canhbao console, page Broadcasts) "
    "as an approver account. An admin who must allow command-line approvals (a console "
    "down in an emergency) sets CANHBAO_ALLOW_CLI_APPROVALS=true."
)


def cli_approval_refusal(decision: str, allowed: bool) -> str | None:
    """Why the command line may not take this decision; None when it may. Only
    approvals are refused: a cancel stops a message and must stay possible anywhere."""
    if decision == ApprovalAction.APPROVE.value and not allowed:
        return CLI_APPROVAL_REFUSED
    return None


def cmd_decide(args: argparse.Namespace) -> int:
    refusal = cli_approval_refusal(args.decision, get_settings().allow_cli_approvals)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    bootstrap = _bootstrap()
    if not bootstrap:
        return 2
    try:
        ev = ApprovalEvent(
            event_id=str(uuid.uuid4()),
            broadcast_id=args.broadcast_id,
            action=ApprovalAction(args.decision),
            actor=args.actor,
            reason=getattr(args, "reason", "") or "",
        )
    except ValidationError as exc:
        print("\n".join(field_errors(exc, args.decision)), file=sys.stderr)
        return 1

    async def go() -> Broadcast | None:
        async with broadcast_reader(bootstrap) as reader:
            before = reader.states.get(args.broadcast_id)
            await _send(bootstrap, APPROVALS, ev.warning_id.encode(), ev.to_bytes())
            # Show what the pipeline made of it (two operators are needed to send).
            deadline = time.monotonic() + args.wait
            while time.monotonic() < deadline:
                await reader.poll(0.5)
                after = reader.states.get(args.broadcast_id)
                if after is not None and after != before:
                    return after
        return None

    after = asyncio.run(go())
    if after is None:
        print(f"sent {args.decision} for {args.broadcast_id}; no change seen yet "
              "(refused? see canhbao.deadletter)")  # fmt: skip
        return 0
    print(_describe(after))
    return 0


def cmd_pending(args: argparse.Namespace) -> int:
    bootstrap = _bootstrap()
    if not bootstrap:
        return 2
    found = asyncio.run(states(bootstrap, STATE_BROADCASTS, Broadcast.model_validate))
    shown = [b for b in found.values() if args.all or b.status.value == "pending"]
    lines = [_describe(b) for b in sorted(shown, key=lambda b: b.requested_at)]
    return _show(lines, "no broadcast waiting for approval")


def _newer(m: grouping.Member, latest: Mapping[str, Warning]) -> Warning | None:
    w = latest.get(m.warning.warning_id)
    return w if w is not None and w.version > m.warning.version else None


def outlook(g: grouping.Group, latest: Mapping[str, Warning]) -> dict[str, Any]:
    """What the worker will do with group ``g``, knowing each warning's ``latest``
    state (``canhbao.state.evaluate``): the warnings it holds, the ones leaving it
    (their newer state, e.g. the all-clear, went to other receivers: the worker will
    neither remind nor list them), and its next message, if any."""
    listed = {wid: m for wid, m in g.members.items() if m.listed}
    leaving = {wid: w for wid, m in listed.items() if (w := _newer(m, latest)) is not None}
    holds = {wid: m for wid, m in listed.items() if wid not in leaving}
    # Without the tombstones and the leaving members, next_wake is the next message.
    wake = grouping.next_wake(g.model_copy(update={"members": holds}))
    pending = [m for m in holds.values() if m.pending]
    kind = None if wake is None else ("changes" if pending else "reminder")
    return {"holds": holds, "leaving": leaving, "pending": len(pending), "next": kind,
            "at": wake}  # fmt: skip


def describe_group(
    g: grouping.Group, now: datetime, latest: Mapping[str, Warning] | None = None
) -> str:
    """One line per group: who gets it, what it holds, when it goes out next."""
    view = outlook(g, latest or {})
    holds: dict[str, grouping.Member] = view["holds"]
    wake: datetime | None = view["at"]
    if view["next"] == "changes" and wake is not None:
        nxt = f"sends {view['pending']} change(s) at {wake.astimezone(VIETNAM):%H:%M:%S %d/%m}"
        if wake <= now:
            nxt += " (due: on the next clock tick)"
    elif view["next"] == "reminder" and wake is not None:
        nxt = f"reminder at {wake.astimezone(VIETNAM):%H:%M:%S %d/%m}"
    else:
        nxt = "nothing to send"
    held = ", ".join(
        sorted(f"{m.warning.hazard} L{m.warning.level} {m.warning.subject}" for m in holds.values())
    )
    leaving: dict[str, Warning] = view["leaving"]
    gone = "".join(
        f"; leaving: {w.hazard} {w.subject} (its newer state v{w.version}, {w.transition.value}, "
        "was routed elsewhere)"
        for w in sorted(leaving.values(), key=lambda w: w.warning_id)
    )
    return (f"{g.id}  {g.channel.value:<11} -> {g.receiver_id} ({g.audience.value}): "
            f"{len(holds)} warning(s) [{held or '-'}]; {nxt}; "
            f"{g.flushes} sent, {g.reminders} reminder(s){gone}")  # fmt: skip


def _warning_state(value: dict[str, Any]) -> Warning | None:
    """A warning's latest state from the evaluate table (other keys hold rule state)."""
    return Warning.model_validate(value) if "warning_id" in value else None


def cmd_groups(args: argparse.Namespace) -> int:
    bootstrap = _bootstrap()
    if not bootstrap:
        return 2
    now = datetime.now(UTC)

    async def read() -> tuple[dict[str, grouping.Group], dict[str, Warning]]:
        groups = await states(bootstrap, STATE_GROUPS, stored_group)
        found = await states(bootstrap, STATE_EVALUATE, _warning_state)
        return groups, {w.warning_id: w for w in found.values() if w is not None}

    groups, latest = asyncio.run(read())
    views = {k: outlook(g, latest) for k, g in groups.items()}
    shown = [g for k, g in groups.items() if args.all or views[k]["holds"]]
    shown.sort(key=lambda g: (g.receiver_id, g.channel.value, g.key))
    if args.json:
        out = []
        for g in shown:
            view = views[g.key]
            out.append({
                **g.model_dump(mode="json"),
                "holds": sorted(view["holds"]),
                "leaving": sorted(view["leaving"]),
                "next": view["next"],
                "next_at": None if view["at"] is None else view["at"].isoformat(),
            })  # fmt: skip
        print(json.dumps(out, ensure_ascii=False))
        return 0
    return _show(
        [describe_group(g, now, latest) for g in shown], "no aggregation group holds a warning"
    )


def cmd_silence(args: argparse.Namespace) -> int:
    bootstrap = _bootstrap()
    if not bootstrap:
        return 2
    now = datetime.now(UTC)
    try:
        silence = Silence(
            id=args.id or uuid.uuid4().hex[:12],
            matchers=args.match,
            starts_at=now,
            ends_at=now + parse_duration(args.duration),
            created_by=args.author,
            comment=args.comment,
        )
    except (ValidationError, ValueError) as exc:
        print(f"silence refused: {exc}", file=sys.stderr)
        return 1
    asyncio.run(_send(bootstrap, CONTROL_SILENCES, silence.id.encode(),
                      silence.model_dump_json().encode()))  # fmt: skip
    print(f"silence {silence.id} until {silence.ends_at.isoformat()} by {silence.created_by}")
    return 0


def cmd_unsilence(args: argparse.Namespace) -> int:
    bootstrap = _bootstrap()
    if not bootstrap:
        return 2
    try:
        lift = SilenceLift(silence_id=args.id, actor=args.actor, reason=args.reason)
    except ValidationError as exc:
        print(f"unsilence refused: {'; '.join(field_errors(exc))}", file=sys.stderr)
        return 1
    # The tombstone lifts it; its header says who did, for the record.
    asyncio.run(_send(bootstrap, CONTROL_SILENCES, args.id.encode(), None, [lift.header()]))
    print(f"silence {args.id} removed by {lift.actor}")
    return 0


def add_operator_parsers(asub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = asub.add_parser(
        "approve",
        help="approve a citizen broadcast (two operators needed; off unless "
        "CANHBAO_ALLOW_CLI_APPROVALS=true: use the console)",
    )
    p.add_argument("broadcast_id")
    p.add_argument("--actor", required=True)
    p.add_argument("--wait", type=float, default=10.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_decide, decision="approve")

    p = asub.add_parser("cancel", help="cancel a broadcast; a sent one is cancelled everywhere")
    p.add_argument("broadcast_id")
    p.add_argument("--actor", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--wait", type=float, default=10.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_decide, decision="cancel")

    p = asub.add_parser("pending", help="broadcasts waiting for approval")
    p.add_argument("--all", action="store_true", help="also sent, expired, cancelled")
    p.set_defaults(func=cmd_pending)

    p = asub.add_parser(
        "groups", help="aggregation groups: what each receiver will get in a digest, and when"
    )
    p.add_argument("--all", action="store_true", help="also groups that hold nothing now")
    p.add_argument("--json", action="store_true", help="the groups as JSON")
    p.set_defaults(func=cmd_groups)

    p = asub.add_parser("silence", help="silence matching warnings for a while")
    p.add_argument("--match", action="append", required=True, help='e.g. hazard="data_gap"')
    p.add_argument("--duration", required=True, help="e.g. 2h")
    p.add_argument("--author", required=True)
    p.add_argument("--comment", required=True)
    p.add_argument("--id")
    p.set_defaults(func=cmd_silence)

    p = asub.add_parser("unsilence", help="end a silence before its time")
    p.add_argument("id")
    p.add_argument("--actor", required=True, help="who lifts it (kept in the threat record)")
    p.add_argument("--reason", default="", help="why (kept in the threat record)")
    p.set_defaults(func=cmd_unsilence)
