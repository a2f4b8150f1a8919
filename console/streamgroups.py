"""The live stream's groups: many warnings of one domain, hazard and commune at once
(a dengue outbreak over ten wards' stations, an attacker tripping many hosts) show as
one collapsed line with their count and highest level, as Alertmanager groups alerts
by labels; fewer than ``MIN_GROUP`` stay single rows. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from topics.models import Warning

MIN_GROUP = 3


def group_key(w: Warning) -> tuple[str, str, str]:
    """What a warning is grouped by: its domain, hazard and commune (its first area;
    one that names none, its subject)."""
    area = w.areas[0].code if w.areas else w.subject
    return (w.domain.value, w.hazard, area)


def group_id(key: tuple[str, str, str]) -> str:
    """An HTML id for the group (its labels may hold any character)."""
    return "g-" + hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class StreamGroup:
    key: tuple[str, str, str]
    warnings: list[Warning]  # in the stream's order: highest level first

    @property
    def id(self) -> str:
        return group_id(self.key)

    @property
    def top(self) -> Warning:
        return self.warnings[0]

    @property
    def level(self) -> int:
        return max(w.level for w in self.warnings)


def group_stream(warnings: list[Warning], min_size: int = MIN_GROUP) -> list[StreamGroup]:
    """``warnings`` (in the stream's order) in groups by :func:`group_key`, each group
    where its first warning stands, so the highest level still comes first. A group
    of fewer than ``min_size`` is one group per warning: single rows."""
    by: dict[tuple[str, str, str], list[Warning]] = {}
    for w in warnings:
        by.setdefault(group_key(w), []).append(w)
    out: list[StreamGroup] = []
    seen: set[tuple[str, str, str]] = set()
    for w in warnings:
        key = group_key(w)
        members = by[key]
        if len(members) < min_size:
            out.append(StreamGroup(key, [w]))
        elif key not in seen:
            seen.add(key)
            out.append(StreamGroup(key, members))
    return out
