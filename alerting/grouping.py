"""Aggregation groups for notifications, in the spirit of Prometheus Alertmanager's
dispatcher (``group_by``, ``group_wait``, ``group_interval``, ``repeat_interval``),
made for early warning. Pure: state and the current time in, decisions out.

A group is one receiver target on one channel, live or exercise (a drill never
shares a message with a real warning), and the values of the route's ``group_by``
labels. Its members are the latest state of each warning in it.

When a group flushes (:func:`due`):

- a new or changed member waits ``group_wait`` from the moment the group started
  waiting (to gather the warnings of a burst into one message), and at least
  ``group_interval`` after the group's last flush. Unlike Alertmanager, a burst after
  a quiet spell is gathered for ``group_wait`` too, rather than sent on arrival;
- when nothing changed for ``repeat_interval`` since the receiver last heard about
  the group, and members are still active: a reminder of those members;
- a flush lists every member still listed: the active ones, and the cleared ones
  whose all-clear is going out now.

Early-warning rules that Alertmanager does not have:

- urgent states never wait. The route stage sends them at once, alone, rendered as
  if there were no group, and tells the group (``GroupEntry.sent``), so that later
  digests list them and reminders count from them;
- a warning raised and cleared before the receiver heard of it is a flap: it is
  never announced, neither the warning nor its all-clear;
- a cleared member leaves the group once its all-clear went out. A tombstone stays
  for :data:`TOMBSTONE` so that a replayed message cannot bring it back;
- a member whose warning has a newer state that did not come to this group (it was
  routed elsewhere, silenced, inhibited) sits out of flushes, and leaves after
  :data:`SETTLE` (its newer state may still be on its way here).

The state is JSON (:meth:`Group.model_dump`), so a restarted worker carries on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from topics import ids
from topics.models import Audience, Channel, GroupEntry, Warning

TOMBSTONE = timedelta(hours=1)
SETTLE = timedelta(seconds=30)
MAX_LABELS = ids.MAX_LABELS

# warning_id -> (the newest version seen on canhbao.warnings, when it was first seen)
Latest = Mapping[str, tuple[int, datetime]]
Outcome = Literal["new", "changed", "sent", "stale", "flap"]
Held = Callable[[Warning], bool]


def group_labels(
    by: tuple[str, ...] | None, labels: Mapping[str, list[str]], warning_id: str
) -> dict[str, str]:
    """The values that name a group; ``by`` None: the warning alone."""
    if by is None:
        return {"warning_id": warning_id}
    return {name: ",".join(sorted(set(labels.get(name, [""])))) for name in by}


def group_key(receiver_id: str, channel: Channel, labels: Mapping[str, str], exercise: bool) -> str:
    return ids.group_key(receiver_id, channel.value, labels, exercise)


group_id = ids.group_id


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warning: Warning
    notified: int = 0  # the last version the receiver was told about (0: none)
    gone_at: AwareDatetime | None = None  # left the group; kept only against replays

    @property
    def listed(self) -> bool:
        return self.gone_at is None

    @property
    def pending(self) -> bool:
        """Listed, and the receiver has not heard of this state yet."""
        return self.listed and self.warning.version > self.notified


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    receiver_id: str
    channel: Channel
    audience: Audience
    address: str
    lang: Literal["vi", "en", "km"] = "vi"
    labels: dict[str, str] = Field(default_factory=dict)
    exercise: bool = False
    wait: timedelta = timedelta(0)
    interval: timedelta = timedelta(0)
    repeat: timedelta | None = None
    created_at: AwareDatetime
    waiting_since: AwareDatetime | None = None  # the oldest unsent change arrived then
    last_flush: AwareDatetime | None = None
    last_sent: AwareDatetime | None = None  # a flush, or a state the route stage sent
    flushes: int = 0  # reminders included
    reminders: int = 0
    members: dict[str, Member] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return group_id(self.key)


@dataclass(frozen=True)
class Flush:
    """What one flush sends: every listed member (most serious first) and which
    of them are new or changed since the receiver last heard."""

    kind: Literal["update", "reminder"]
    warnings: tuple[Warning, ...]
    changed: frozenset[str]
    seq: int  # this flush's number in the group, from 1

    @property
    def reminder(self) -> bool:
        return self.kind == "reminder"


def _order(w: Warning) -> tuple[bool, int, int, str]:
    return (not w.active, -w.level, -w.severity.rank, w.warning_id)


def _newer(latest: Latest, m: Member) -> tuple[int, datetime] | None:
    seen = latest.get(m.warning.warning_id)
    return seen if seen is not None and seen[0] > m.warning.version else None


def _rewait(g: Group, now: datetime) -> None:
    if not any(m.pending for m in g.members.values()):
        g.waiting_since = None
    elif g.waiting_since is None:
        g.waiting_since = now


def _flush_at(g: Group) -> datetime:
    """When pending changes may go: group_wait after the group started waiting, and
    group_interval after its last flush."""
    at = (g.waiting_since or g.created_at) + g.wait
    return at if g.last_flush is None else max(at, g.last_flush + g.interval)


def receive(group: Group | None, entry: GroupEntry, now: datetime) -> tuple[Group, Outcome]:
    """``group`` with the state in ``entry`` (``group`` None: a new group)."""
    w = entry.warning
    if group is None:
        g = Group(
            key=entry.group_key, receiver_id=entry.receiver_id, channel=entry.channel,
            audience=entry.audience, address=entry.address, created_at=min(entry.routed_at, now),
        )  # fmt: skip
    else:
        g = group.model_copy(deep=True)
    # The route's current options and the directory's current address win.
    g.audience, g.address, g.lang = entry.audience, entry.address, entry.lang
    g.labels, g.exercise = dict(entry.labels), w.exercise
    g.wait = timedelta(seconds=entry.group_wait)
    g.interval = timedelta(seconds=entry.group_interval)
    g.repeat = None if entry.repeat_interval is None else timedelta(seconds=entry.repeat_interval)

    old = g.members.get(w.warning_id)
    if old is not None and w.version <= old.warning.version:
        return g, "stale"  # a replay, or an older state overtaken
    told = old.notified if old is not None and old.listed else 0
    outcome: Outcome
    if entry.sent:
        g.members[w.warning_id] = Member(
            warning=w, notified=w.version, gone_at=None if w.active else now
        )
        g.last_sent = now if g.last_sent is None else max(g.last_sent, now)
        outcome = "sent"
    elif not w.active and told == 0:
        g.members[w.warning_id] = Member(warning=w, gone_at=now)
        outcome = "flap"
    else:
        g.members[w.warning_id] = Member(warning=w, notified=told)
        outcome = "changed" if old is not None and old.listed else "new"
    _rewait(g, min(entry.routed_at, now))
    return g, outcome


def settle(group: Group, now: datetime, latest: Latest) -> tuple[Group | None, list[str]]:
    """Drop expired tombstones, and members whose newer state went elsewhere; None
    when nothing is left. Also returns the ids of the members that left."""
    g = group.model_copy(deep=True)
    left: list[str] = []
    for wid, m in list(g.members.items()):
        if m.gone_at is not None:
            if m.gone_at + TOMBSTONE <= now:
                del g.members[wid]
            continue
        newer = _newer(latest, m)
        if newer is not None and newer[1] + SETTLE <= now:
            m.gone_at = now
            left.append(wid)
    _rewait(g, now)
    return (g if g.members else None), left


def due(
    group: Group,
    now: datetime,
    *,
    latest: Latest | None = None,
    reminders: bool = True,
    held: Held | None = None,
) -> Flush | None:
    """The flush ``group`` owes at ``now``, if any. ``reminders`` False defers them
    (until the worker knows every warning's latest state); ``held`` tells which
    members a reminder must leave out now (silenced, quiet hours, ...)."""
    seen = latest or {}
    listed = [m for m in group.members.values() if m.listed]
    current = [m for m in listed if _newer(seen, m) is None]
    changed = [m for m in current if m.pending]
    seq = group.flushes + 1
    if changed:
        if now < _flush_at(group):
            return None
        shown = sorted((m.warning for m in current), key=_order)
        return Flush("update", tuple(shown), frozenset(m.warning.warning_id for m in changed), seq)
    if any(m.pending for m in listed) or not reminders or group.repeat is None:
        return None
    if group.last_sent is None or now < group.last_sent + group.repeat:
        return None
    active = [m.warning for m in current if m.warning.active and not (held and held(m.warning))]
    if not active:
        return None
    return Flush("reminder", tuple(sorted(active, key=_order)), frozenset(), seq)


def flushed(group: Group, flush: Flush, now: datetime) -> Group:
    """``group`` once ``flush`` went out: its members told, its all-clears gone."""
    g = group.model_copy(deep=True)
    for w in flush.warnings:
        m = g.members.get(w.warning_id)
        if m is None or m.warning.version != w.version:
            continue
        m.notified = w.version
        if not w.active:
            m.gone_at = now
    g.flushes = flush.seq
    g.reminders += 1 if flush.reminder else 0
    g.last_flush = g.last_sent = now
    g.waiting_since = None
    _rewait(g, now)
    return g


def next_wake(group: Group) -> datetime | None:
    """The earliest time :func:`due` or :func:`settle` may have something to do for
    ``group`` if no new state arrives (None: not before one arrives). A worker checks
    only the groups whose time has come, not every group on every tick."""
    times: list[datetime] = []
    listed = [m for m in group.members.values() if m.listed]
    if any(m.pending for m in listed):
        times.append(_flush_at(group))
    elif (
        group.repeat is not None
        and group.last_sent is not None
        and any(m.warning.active for m in listed)
    ):
        times.append(group.last_sent + group.repeat)
    times += [m.gone_at + TOMBSTONE for m in group.members.values() if m.gone_at is not None]
    return min(times) if times else None
