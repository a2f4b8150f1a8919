"""What the broadcasts page shows of a citizen broadcast, and the request the console
sends for one. Pure: the texts come from the worker's own renderer
(``alerting.messages.renderer``, passed in), the delivery counts from the threat
record's rows (``console.history``), the request from the routing's citizen receiver.

The texts are the ones citizens would get: ``alerting.notify.citizen_notifications``
renders each SMS once per subscriber language and each loudspeaker script in
Vietnamese (heard by everyone in the commune), with the citizen audience."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerting.notify import Lang, Renderer
from alerting.render import LANGS, SMS_MAX_SEGMENTS
from alerting.routes import ReceiverConfig, RoutingConfig
from alerting.sms import split
from topics import ids
from topics.models import (
    ApprovalAction,
    ApprovalEvent,
    Audience,
    Broadcast,
    BroadcastStatus,
    Channel,
    Warning,
)

# The languages each citizen channel goes out in (as citizen_notifications sends them).
SPOKEN: tuple[Lang, ...] = ("vi",)


@dataclass(frozen=True)
class Text:
    channel: Channel
    lang: Lang
    body: str
    segments: int = 0  # SMS: how many segments it takes (0 for a loudspeaker script)


def citizen_texts(b: Broadcast, render: Renderer) -> list[Text]:
    """The exact messages of ``b`` per channel and language: SMS in every language a
    subscriber may choose, the loudspeaker script in Vietnamese."""
    out: list[Text] = []
    for channel in b.channels:
        langs: tuple[Lang, ...] = ()
        if channel is Channel.SMS:
            langs = LANGS
        elif channel is Channel.LOUDSPEAKER:
            langs = SPOKEN
        for lang in langs:
            body = render(b.warning, channel, lang, Audience.CITIZEN).body
            if channel is Channel.SMS:
                # The body is the text sent (already cut to the citizens' limit).
                sms = split(body, SMS_MAX_SEGMENTS[Audience.CITIZEN])
                out.append(Text(channel, lang, body, len(sms.parts)))
            else:
                out.append(Text(channel, lang, body))
    return out


def time_left(b: Broadcast, now: datetime) -> timedelta:
    """How long the approvers still have (zero once it expired)."""
    return max(b.expires_at - now, timedelta(0))


def minutes_left(b: Broadcast, now: datetime) -> int:
    """Whole minutes left, rounded up: "1 min" until the very end, never "0" early."""
    seconds = time_left(b, now).total_seconds()
    return int(-(-seconds // 60))


@dataclass
class ChannelCount:
    """What became of one channel's messages of a broadcast (or of its Cancel)."""

    channel: str
    messages: int = 0  # SMS batches or loudspeakers
    recipients: int = 0  # phone numbers in the batches; communes for loudspeakers
    delivered: int = 0
    failed: int = 0
    waiting: int = 0  # not delivered yet: not attempted, or being retried
    delivered_recipients: int = 0


@dataclass
class Counts:
    sent: list[ChannelCount] = field(default_factory=list)
    cancel: list[ChannelCount] = field(default_factory=list)


def _is_citizen(n: dict[str, Any], version: int) -> bool:
    return (
        n.get("audience") == Audience.CITIZEN.value
        and int(n.get("warning_version") or 0) == version
        and str(n["receiver_id"]).startswith(("citizens-", "loa-"))
    )


def delivery_counts(
    b: Broadcast, notifications: list[dict[str, Any]], attempts: list[dict[str, Any]]
) -> Counts:
    """Per channel, the messages of ``b`` the threat record holds and what became of
    them (the last attempt's outcome), its Cancel's apart; from the record's
    ``notifications`` and ``delivery_attempts`` rows of the broadcast's warning."""
    last: dict[str, str] = {}
    for a in sorted(attempts, key=lambda a: (a["at"], a["attempt"])):
        last[a["notification_id"]] = a["outcome"]
    counts = Counts()
    by: dict[tuple[bool, str], ChannelCount] = {}
    for n in notifications:
        if not _is_citizen(n, b.warning.version):
            continue
        nid = str(n["notification_id"])
        cancel = nid.endswith(ids.cancel_id(""))
        channel = str(n["channel"])
        c = by.get((cancel, channel))
        if c is None:
            c = by[(cancel, channel)] = ChannelCount(channel)
            (counts.cancel if cancel else counts.sent).append(c)
        people = int(n.get("recipients") or 0) or 1  # a loudspeaker: its commune
        c.messages += 1
        c.recipients += people
        outcome = last.get(nid, "")
        if outcome == "delivered" or outcome == "duplicate":
            c.delivered += 1
            c.delivered_recipients += people
        elif outcome == "failed":
            c.failed += 1
        else:
            c.waiting += 1
    return counts


class RequestError(ValueError):
    """A broadcast the console cannot request; the message says why."""


def citizen_receiver(routing: RoutingConfig) -> ReceiverConfig | None:
    """The routing's receiver of messages to citizens that waits for approval (the
    channels and expiry of a broadcast an operator asks for), None when there is none."""
    return next((r for r in routing.receivers if r.to.citizens and r.approval is not None), None)


def request_event(
    w: Warning,
    receiver: ReceiverConfig,
    known: dict[str, Broadcast],
    actor: str,
    reason: str,
    now: datetime,
) -> ApprovalEvent:
    """The REQUEST event that asks two approvers to send ``w`` to its communes'
    citizens, by ``actor`` (an account), as the route stage asks for one; RequestError
    when it cannot be asked: a warning no longer active or without a commune, one
    already asked for this state, no reason given."""
    reason = reason.strip()
    if not reason:
        raise RequestError("a reason is required")
    if not w.active or w.level <= 0:
        raise RequestError("the warning is no longer active")
    communes = [a.code for a in w.areas]
    if not communes:
        raise RequestError("the warning names no commune to warn")
    bid = ids.broadcast_id(w.warning_id, w.version)
    if bid in known:
        raise RequestError(f"a broadcast of this state was already asked for ({bid})")
    assert receiver.approval is not None
    b = Broadcast(
        broadcast_id=bid,
        warning=w,
        communes=communes,
        channels=list(receiver.channels),
        requested_at=now,
        expires_at=now + receiver.approval.expires_after,
    )
    return ApprovalEvent(
        event_id=str(uuid.uuid4()), broadcast_id=bid, action=ApprovalAction.REQUEST,
        actor=actor, reason=reason, broadcast=b, at=now,
    )  # fmt: skip


def cancellable(b: Broadcast) -> bool:
    """Waiting or sent: the pipeline refuses to cancel anything else."""
    return b.status in (BroadcastStatus.PENDING, BroadcastStatus.SENT)
