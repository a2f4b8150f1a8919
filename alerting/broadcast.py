"""Two-person rule for messages to citizens (the lesson of Hawaii, January 2018:
one person, one click, no confirmation). A broadcast is sent only when two
different operators approve it before it expires; it can be cancelled at any
time, and a sent one is cancelled on every channel it went out on. Pure logic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from topics.models import ApprovalAction, ApprovalEvent, Broadcast, BroadcastStatus

APPROVERS_NEEDED = 2


class Refused(ValueError):
    """An approval event that cannot apply; the reason is reported, nothing changes."""


@dataclass
class Step:
    broadcast: Broadcast
    send: bool = False  # fan the broadcast out now
    cancel_sent: bool = False  # send Cancel on every channel it went out on
    superseded: list[Broadcast] = field(default_factory=list)


def apply(
    current: Broadcast | None, event: ApprovalEvent, pending_same_warning: list[Broadcast]
) -> Step:
    if event.action is ApprovalAction.REQUEST:
        assert event.broadcast is not None
        if current is not None:
            raise Refused(f"{event.broadcast_id} was already requested")
        # A newer state of the warning replaces any broadcast still waiting for it.
        older = [
            b.model_copy(update={"status": BroadcastStatus.SUPERSEDED})
            for b in pending_same_warning
            if b.status is BroadcastStatus.PENDING and b.broadcast_id != event.broadcast_id
        ]
        requested = event.broadcast.model_copy(update={"requested_by": event.actor})
        return Step(requested, superseded=older)
    if current is None:
        raise Refused(f"no broadcast {event.broadcast_id}")
    if event.action is ApprovalAction.CANCEL:
        if current.status in (BroadcastStatus.CANCELLED, BroadcastStatus.EXPIRED):
            raise Refused(f"{event.broadcast_id} is already {current.status.value}")
        was_sent = current.status is BroadcastStatus.SENT
        done = current.model_copy(
            update={
                "status": BroadcastStatus.CANCELLED,
                "cancelled_by": event.actor,
                "reason": event.reason,
            }
        )
        return Step(done, cancel_sent=was_sent)
    # approve
    if current.status is not BroadcastStatus.PENDING:
        raise Refused(f"{event.broadcast_id} is {current.status.value}, not waiting for approval")
    if event.at >= current.expires_at:
        raise Refused(f"{event.broadcast_id} expired at {current.expires_at.isoformat()}")
    if current.requested_by is not None and event.actor == current.requested_by:
        # Two people besides the one who asked: the rule holds in the pipeline, not
        # only in the console that hides the button.
        raise Refused(
            f"{event.actor} requested {event.broadcast_id} and cannot approve it: two "
            "other operators must"
        )
    if event.actor in current.approvals:
        raise Refused(
            f"{event.actor} already approved {event.broadcast_id}: a second, different "
            "operator must approve"
        )
    approvals = [*current.approvals, event.actor]
    if len(approvals) < APPROVERS_NEEDED:
        return Step(current.model_copy(update={"approvals": approvals}))
    sent = current.model_copy(
        update={"approvals": approvals, "status": BroadcastStatus.SENT, "sent_at": event.at}
    )
    return Step(sent, send=True)


def expire(current: Broadcast, now: datetime) -> Broadcast | None:
    """The broadcast expired, if it is still pending at ``now``. ``now`` is the wall
    clock, as ``expires_at`` is: never a drill's scenario time, which may run hours
    ahead and would leave the operators no time at all."""
    if current.status is BroadcastStatus.PENDING and now >= current.expires_at:
        return current.model_copy(update={"status": BroadcastStatus.EXPIRED})
    return None
