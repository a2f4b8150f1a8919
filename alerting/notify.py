"""From one warning state to the notifications it causes: the routing tree picks
receivers; inhibition, silences and quiet hours hold some back (recorded, not
dropped silently); messages to citizens above the configured severity become a
``Broadcast`` that waits for two operators. On a grouped route, agency and committee
messages (webhook, e-mail, SMS) also become ``GroupEntry``s for their aggregation
group (:mod:`alerting.grouping`); those that need not wait are sent at once too.
Pure logic."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.governance import coordinators
from alerting.grouping import Flush, Group, group_key, group_labels
from alerting.routes import (
    Grouping,
    ReceiverConfig,
    RoutingConfig,
    Silence,
    inhibited_by,
    labels_of,
    needs_approval,
    quiet,
    receivers_with_grouping,
    silenced_by,
)
from topics import ids
from topics.models import Audience, Broadcast, Channel, GroupEntry, Notification, Warning

Lang = Literal["vi", "en", "km"]
SMS_BATCH = 500


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    html: str | None = None
    payload: dict[str, object] = field(default_factory=dict)


Renderer = Callable[[Warning, Channel, Lang, Audience], Message]
# What a group flush says: its warnings, the ids of those that changed, and whether
# it is a reminder. One warning renders as a Renderer would (marked when a reminder).
FlushRenderer = Callable[
    [Sequence[Warning], frozenset[str], Channel, Lang, Audience, bool, dict[str, str]], Message
]
# CAP is one alert per message with references to the ones before: never a digest.
# Citizens and loudspeakers get plain, single instructions.
GROUPED_CHANNELS = frozenset({Channel.WEBHOOK, Channel.EMAIL, Channel.SMS})


@dataclass(frozen=True)
class Suppressed:
    notification_id: str
    receiver_id: str
    channel: Channel
    reason: str


@dataclass
class Plan:
    notifications: list[Notification] = field(default_factory=list)
    suppressed: list[Suppressed] = field(default_factory=list)
    broadcasts: list[Broadcast] = field(default_factory=list)
    grouped: list[GroupEntry] = field(default_factory=list)  # for canhbao.group.notifications


@dataclass(frozen=True)
class Target:
    id: str
    channel: Channel
    address: str
    audience: Audience
    lang: Lang = "vi"


def _lang(value: str) -> Lang:
    return value if value in ("vi", "en", "km") else "vi"  # type: ignore[return-value]


def _agency_targets(directory: Directory, code: str, channels: list[Channel]) -> list[Target]:
    agency = directory.agencies.get(code)
    if agency is None:
        return []
    return [
        Target(r.id, r.channel, r.address, Audience.AGENCY, _lang(r.lang))
        for r in agency.receivers
        if r.channel in channels
    ]


def targets(
    receiver: ReceiverConfig, warning: Warning, directory: Directory, audiences: Audiences
) -> list[Target]:
    """Everyone a (non-citizen) receiver addresses for this warning, per channel."""
    to, channels = receiver.to, receiver.channels
    out: list[Target] = []
    if to.lead_agency:
        out += _agency_targets(directory, warning.lead_agency.code, channels)
    if to.coordinators:
        for code in coordinators(directory, warning.domain, warning.phase):
            out += _agency_targets(directory, code, channels)
    if to.station_owner:
        station = directory.station(warning.subject)
        if station is not None:
            out += _agency_targets(directory, station.owner, channels)
    for code in to.agencies:
        out += _agency_targets(directory, code, channels)
        partner = audiences.partner(code)
        if partner is not None:
            if partner.cap and Channel.CAP in channels:
                out.append(Target(code, Channel.CAP, partner.cap, Audience.PARTNER,
                                  _lang(partner.lang)))  # fmt: skip
            if partner.webhook and Channel.WEBHOOK in channels:
                out.append(Target(code, Channel.WEBHOOK, partner.webhook, Audience.PARTNER,
                                  _lang(partner.lang)))  # fmt: skip
    if to.commune_committees:
        for area in warning.areas:
            c = audiences.committee(area.code)
            if c is None:
                continue
            rid = f"ubnd-{area.code}"
            for channel, address in (
                (Channel.WEBHOOK, c.webhook),
                (Channel.SMS, c.sms),
                (Channel.EMAIL, c.email),
            ):
                if address and channel in channels:
                    out.append(Target(rid, channel, address, Audience.COMMUNE))
    seen: set[tuple[str, Channel]] = set()
    unique = []
    for t in out:
        if (t.id, t.channel) not in seen:
            seen.add((t.id, t.channel))
            unique.append(t)
    return unique


def notification_id(warning: Warning, target_id: str, channel: Channel) -> str:
    return ids.notification_id(warning.warning_id, warning.version, target_id, channel.value)


def observed_at(warning: Warning) -> datetime | None:
    """When (wall clock) the latest reading or report that decided this state was
    observed; None for a state no observation decided (an operator's command)."""
    return max((e.observed_wall() for e in warning.evidence), default=None)


def _note(warning: Warning, t: Target, msg: Message, recipients: list[str] | None = None,
          nid: str | None = None, observed: bool = True) -> Notification:  # fmt: skip
    return Notification(
        notification_id=nid or notification_id(warning, t.id, t.channel),
        warning_id=warning.warning_id,
        warning_version=warning.version,
        receiver_id=t.id,
        channel=t.channel,
        audience=t.audience,
        address=t.address,
        recipients=recipients or [],
        lang=t.lang,
        subject=msg.subject,
        body=msg.body,
        html=msg.html,
        payload=dict(msg.payload),
        exercise=warning.exercise,
        observed_at=observed_at(warning) if observed else None,
    )


def citizen_notifications(
    warning: Warning,
    communes: list[str],
    channels: list[Channel],
    audiences: Audiences,
    render: Renderer,
    batch: int = SMS_BATCH,
) -> list[Notification]:
    """The fan-out: rendered once per language and channel, sent in batches."""
    out: list[Notification] = []
    cache: dict[tuple[Channel, Lang], Message] = {}

    def message(channel: Channel, lang: Lang) -> Message:
        if (channel, lang) not in cache:
            cache[(channel, lang)] = render(warning, channel, lang, Audience.CITIZEN)
        return cache[(channel, lang)]

    for commune in communes:
        if Channel.SMS in channels:
            by_lang: dict[Lang, list[str]] = {}
            for sub in audiences.subscribers(commune):
                by_lang.setdefault(_lang(sub.lang), []).append(sub.phone)
            for lang, phones in sorted(by_lang.items()):
                for i in range(0, len(phones), batch):
                    rid = f"citizens-{commune}-{lang}-{i // batch}"
                    t = Target(rid, Channel.SMS, "batch", Audience.CITIZEN, lang)
                    out.append(_note(warning, t, message(Channel.SMS, lang), phones[i : i + batch]))
        if Channel.LOUDSPEAKER in channels:
            speaker = audiences.loudspeaker(commune)
            if speaker is not None:
                t = Target(f"loa-{commune}", Channel.LOUDSPEAKER, speaker.topic, Audience.CITIZEN)
                msg = message(Channel.LOUDSPEAKER, "vi")
                siren = warning.active and warning.level >= 3
                out.append(_note(warning, t, Message(msg.subject, msg.body, None,
                                                     {**msg.payload, "siren": siren})))  # fmt: skip
    return out


def hold_reason(
    config: RoutingConfig,
    warning: Warning,
    channel: Channel,
    *,
    active: Iterable[Warning],
    silences: Iterable[Silence],
    now: datetime,
) -> str | None:
    """Why a message about ``warning`` on ``channel`` must not go out now, if it must not."""
    labels = labels_of(warning)
    inhibitor = inhibited_by(config, warning, active, labels)
    silence = silenced_by([*config.silences, *silences], warning, now, labels)
    return _reason(config, warning, channel, inhibitor, silence, now, labels)


def _reason(
    config: RoutingConfig,
    warning: Warning,
    channel: Channel,
    inhibitor: Warning | None,
    silence: Silence | None,
    now: datetime,
    labels: dict[str, list[str]],
) -> str | None:
    if inhibitor is not None:
        return f"inhibited by {inhibitor.warning_id} (level {inhibitor.level})"
    if silence is not None:
        return f"silenced by {silence.created_by} until {silence.ends_at}: {silence.comment}"
    if quiet(config, channel, warning, now, labels):
        return "quiet hours (not urgent)"
    return None


def _entry(warning: Warning, t: Target, g: Grouping, labels: dict[str, list[str]], sent: bool,
           now: datetime) -> GroupEntry:  # fmt: skip
    values = group_labels(g.by, labels, warning.warning_id)
    return GroupEntry(
        group_key=group_key(t.id, t.channel, values, warning.exercise),
        labels=values,
        receiver_id=t.id,
        channel=t.channel,
        audience=t.audience,
        address=t.address,
        lang=t.lang,
        warning=warning,
        group_wait=g.wait.total_seconds(),
        group_interval=g.interval.total_seconds(),
        repeat_interval=None if g.repeat is None else g.repeat.total_seconds(),
        sent=sent,
        routed_at=now,
    )


def plan(
    warning: Warning,
    config: RoutingConfig,
    directory: Directory,
    audiences: Audiences,
    render: Renderer,
    *,
    active: Iterable[Warning],
    silences: Iterable[Silence],
    now: datetime,
) -> Plan:
    """``active``: the warnings in force, read only when an inhibit rule may apply (the
    route stage passes its live view, not a copy: a burst makes it long)."""
    out = Plan()
    if warning.labels.get("notify") == "false":
        return out  # a rule that only feeds compound rules
    labels = labels_of(warning)
    inhibitor = inhibited_by(config, warning, active, labels)
    silence = silenced_by([*config.silences, *silences], warning, now, labels)
    # One rendering per channel, language and audience: every agency's webhook in
    # Vietnamese gets the same words (a level-II flood reaches a dozen receivers).
    rendered: dict[tuple[Channel, Lang, Audience], Message] = {}
    for receiver, grouping in receivers_with_grouping(config, warning, labels):
        if receiver.to.citizens:
            _citizens(warning, receiver, audiences, render, now, out, inhibitor, silence)
        for t in targets(receiver, warning, directory, audiences):
            reason = _reason(config, warning, t.channel, inhibitor, silence, now, labels)
            if reason is not None:
                nid = notification_id(warning, t.id, t.channel)
                out.suppressed.append(Suppressed(nid, t.id, t.channel, reason))
                continue
            at_once = True
            if grouping is not None and t.channel in GROUPED_CHANNELS:
                # Urgent states, and routes with nothing to wait for, go out now as
                # always; the group only hears of them (for its digests and reminders).
                at_once = grouping.immediate or grouping.is_urgent(warning, labels)
                out.grouped.append(_entry(warning, t, grouping, labels, at_once, now))
            if at_once:
                key = (t.channel, t.lang, t.audience)
                msg = rendered.get(key)
                if msg is None:
                    msg = rendered[key] = render(warning, t.channel, t.lang, t.audience)
                out.notifications.append(_note(warning, t, msg))
    return out


def flush_notification(group: Group, flush: Flush, render: FlushRenderer) -> Notification:
    """The one message a group flush sends to its target.

    Its id is unique per flush and stable when a flush is replayed: one warning's
    update keeps today's id (so the dispatcher's ledger knows it, however it was
    routed); a reminder counts the group's reminders; a digest names the group, the
    flush and the warning versions it lists."""
    t = Target(group.receiver_id, group.channel, group.address, group.audience, group.lang)
    msg = render(flush.warnings, flush.changed, t.channel, t.lang, t.audience, flush.reminder,
                 dict(group.labels))  # fmt: skip
    if len(flush.warnings) == 1:
        (w,) = flush.warnings
        nid = notification_id(w, t.id, t.channel)
        if flush.reminder:
            nid = ids.reminder_id(nid, group.reminders + 1)
        # A reminder repeats an old state: its wait is by design, not latency.
        return _note(w, t, msg, nid=nid, observed=not flush.reminder)
    states = [(w.warning_id, w.version) for w in flush.warnings]
    nid = ids.digest_id(group.id, flush.seq, flush.kind, states, t.id, t.channel.value)
    note = _note(flush.warnings[0], t, msg, nid=nid, observed=False)
    # Receipts of a digest are about the group: its id, and the flush as its version.
    return note.model_copy(update={"warning_id": group.id, "warning_version": flush.seq})


def _citizens(
    warning: Warning,
    receiver: ReceiverConfig,
    audiences: Audiences,
    render: Renderer,
    now: datetime,
    out: Plan,
    inhibitor: Warning | None,
    silence: Silence | None,
) -> None:
    communes = [a.code for a in warning.areas]
    nid = ids.broadcast_id(warning.warning_id, warning.version)
    if inhibitor is not None or silence is not None:
        why = "inhibited" if inhibitor is not None else "silenced"
        for channel in receiver.channels:
            out.suppressed.append(Suppressed(nid, "citizens", channel, why))
        return
    if needs_approval(receiver, warning):
        assert receiver.approval is not None
        out.broadcasts.append(
            Broadcast(
                broadcast_id=nid,
                warning=warning,
                communes=communes,
                channels=list(receiver.channels),
                requested_at=now,
                expires_at=now + receiver.approval.expires_after,
            )
        )
        return
    out.notifications += citizen_notifications(
        warning, communes, list(receiver.channels), audiences, render
    )


CANCEL_TEXT = {
    "vi": "HỦY TIN: tin cảnh báo {hazard} lúc {time} đã bị hủy ({reason}). Không cần thực hiện.",
    "en": "CANCELLED: the {hazard} warning sent at {time} is withdrawn ({reason}). No action.",
    "km": "បានលុបចោល៖ ការព្រមាន {hazard} នៅម៉ោង {time} ត្រូវបានលុបចោល ({reason})។",
}


def cancel_notifications(
    broadcast: Broadcast, reason: str, audiences: Audiences, at: datetime
) -> list[Notification]:
    """A Cancel on every channel the broadcast went out on, to the same people."""
    w = broadcast.warning
    local = (broadcast.sent_at or at) + timedelta(hours=7)
    hazard = w.annotations.get("summary_vi", w.hazard)

    def render(_: Warning, channel: Channel, lang: Lang, __: Audience) -> Message:
        text = CANCEL_TEXT[lang].format(
            hazard=hazard if lang == "vi" else w.annotations.get("summary_en", w.hazard),
            time=local.strftime("%H:%M %d/%m"),
            reason=reason,
        )
        if w.exercise:
            text = {"vi": "[DIỄN TẬP] ", "en": "[EXERCISE] ", "km": "[សមយុទ្ធ] "}[lang] + text
        return Message(subject=text[:60], body=text, payload={"cancel": True})

    notes = citizen_notifications(w, broadcast.communes, broadcast.channels, audiences, render)
    # Their own ids: the ledger must not take a Cancel for the message it cancels.
    return [n.model_copy(update={"notification_id": ids.cancel_id(n.notification_id)})
            for n in notes]  # fmt: skip
