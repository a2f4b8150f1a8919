"""Silences from the console: read the form, preview what a silence would hold back,
and know which are active and which ended lately. Pure: the web handlers and the
Kafka reader call it, the unit tests too.

A silence is the same message ``canhbao alerts silence`` writes to
``canhbao.control.silences`` (``alerting.routes.Silence``, keyed by its id); lifting
one early is the tombstone ``canhbao alerts unsilence`` writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from alerting.routes import Matcher, Silence, labels_of
from pipeline.lifecycle import is_active
from topics.durations import parse_duration
from topics.errors import field_errors
from topics.models import Warning

# Longer than a week, noise is not passing: it is a rule to change.
MAX_DURATION = timedelta(days=7)
# Ended silences stay on the page this long, so the shift after sees what was lifted.
RECENT = timedelta(hours=24)


class SilenceError(ValueError):
    """A silence the form cannot make; the message says why, to the operator."""


@dataclass(frozen=True)
class Entry:
    """A silence as the console knows it: lifted early when a tombstone came (by whom,
    when the console saw who sent it)."""

    silence: Silence
    lifted_at: datetime | None = None
    lifted_by: str | None = None

    def ends(self) -> datetime:
        if self.lifted_at is not None and self.lifted_at < self.silence.ends_at:
            return self.lifted_at
        return self.silence.ends_at

    def active(self, now: datetime) -> bool:
        return self.silence.starts_at <= now < self.ends()


def matchers_of(text: str) -> list[str]:
    """The matchers of the form, one a line (blank lines skipped); SilenceError naming
    the line that is not one."""
    found = [line.strip() for line in text.splitlines() if line.strip()]
    if not found:
        raise SilenceError('at least one matcher is needed, e.g. hazard="river_flood"')
    for m in found:
        try:
            Matcher.parse(m)
        except ValueError as exc:
            raise SilenceError(str(exc)) from exc
    return found


def preview(matchers: list[str], warnings: Iterable[Warning]) -> list[Warning]:
    """The active warnings (raised, not cleared nor closed) a silence of ``matchers``
    would hold back now, highest level first."""
    parsed = [Matcher.parse(m) for m in matchers]
    hit = [w for w in warnings if is_active(w)
           and all(m.matches(labels_of(w)) for m in parsed)]  # fmt: skip
    return sorted(hit, key=lambda w: (-w.level, w.warning_id))


def make(matchers_text: str, duration: str, reason: str, actor: str, now: datetime) -> Silence:
    """The silence the form asks for, from now; SilenceError saying what is wrong."""
    matchers = matchers_of(matchers_text)
    try:
        length = parse_duration(duration.strip())
    except ValueError as exc:
        raise SilenceError(str(exc)) from exc
    if length > MAX_DURATION:
        raise SilenceError("a silence lasts at most 7 days: change the rule instead")
    if not reason.strip():
        raise SilenceError("a reason is required")
    try:
        return Silence(id=uuid.uuid4().hex[:12], matchers=matchers, starts_at=now,
                       ends_at=now + length, created_by=actor,
                       comment=reason.strip())  # fmt: skip
    except ValidationError as exc:
        raise SilenceError("; ".join(field_errors(exc, "silence"))) from exc


def silenced_by(entries: Iterable[Entry], w: Warning, now: datetime) -> Entry | None:
    """The active silence that holds ``w`` back now, if any."""
    labels = labels_of(w)
    for e in entries:
        if e.active(now) and e.silence.silences(labels, now):
            return e
    return None


def listing(entries: Iterable[Entry], now: datetime) -> tuple[list[Entry], list[Entry]]:
    """The active silences (ending soonest first) and those that ended within
    :data:`RECENT` (latest first); older ones and future ones are left out."""
    items = list(entries)
    active = sorted((e for e in items if e.active(now)), key=lambda e: e.ends())
    ended = sorted((e for e in items if e.ends() <= now and now - e.ends() <= RECENT),
                   key=lambda e: e.ends(), reverse=True)  # fmt: skip
    return active, ended
