"""``canhbao alerts groups``: what an operator is told about aggregation groups must be
what the worker will do. A warning whose newer state (its all-clear) was routed to
other receivers is leaving the group: it is neither held nor reminded of, so the
listing must not show it as held with a reminder time (issue 15, item 10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerting import grouping
from alerting.directory import Directory
from alerting.governance import lead_agency
from canhbao.operator_cli import describe_group, outlook
from topics.models import (
    Audience,
    Channel,
    Domain,
    GroupEntry,
    Phase,
    ScopeTier,
    Severity,
    Transition,
    Warning,
)

T0 = datetime(2025, 10, 7, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam
KEY = "bchqs-webhook|webhook|live|domain=water,hazard=river_flood"


def flood(directory: Directory, version: int, level: int) -> Warning:
    cleared = level == 0
    return Warning(
        warning_id="water.flood.dap-cau:dap-cau", version=version, rule_id="water.flood.dap-cau",
        domain=Domain.WATER, hazard="river_flood", subject="dap-cau",
        transition=Transition.CLEARED if cleared else Transition.RAISED, level=level,
        level_name="" if cleared else "I", previous_level=1 if cleared else 0,
        severity=Severity.MODERATE, areas=[directory.area("bn-vu-ninh")],
        scope_tier=ScopeTier.COMMUNE, lead_agency=lead_agency(directory, Domain.WATER,
                                                              Phase.INCIDENT),
        raised_at=T0, updated_at=T0 + timedelta(hours=version),
    )  # fmt: skip


def sent_at_once(w: Warning) -> grouping.Group:
    """A group that heard of level I when the route stage sent it at once."""
    entry = GroupEntry(
        group_key=KEY, labels={"domain": "water", "hazard": "river_flood"},
        receiver_id="bchqs-webhook", channel=Channel.WEBHOOK, audience=Audience.AGENCY,
        address="http://x/hooks/bchqs", warning=w, repeat_interval=4 * 3600, sent=True,
        routed_at=T0,
    )  # fmt: skip
    group, _ = grouping.receive(None, entry, T0)
    return group


def test_a_warning_cleared_elsewhere_is_listed_as_leaving_not_held_for_a_reminder(
    directory: Directory,
) -> None:
    level1 = flood(directory, 1, 1)
    group = sent_at_once(level1)
    # While level I is the latest state, the group holds it and will remind of it.
    line = describe_group(group, T0, {level1.warning_id: level1})
    assert "1 warning(s) [river_flood L1 dap-cau]; reminder at 14:00:00 07/10" in line
    # Its all-clear (v7) went to other receivers: nothing is held, nothing will be sent.
    clear = flood(directory, 7, 0)
    line = describe_group(group, T0 + timedelta(hours=8), {clear.warning_id: clear})
    assert "reminder at" not in line
    assert "0 warning(s) [-]; nothing to send" in line
    assert "leaving: river_flood dap-cau (its newer state v7, cleared" in line
    view = outlook(group, {clear.warning_id: clear})
    assert not view["holds"] and view["next"] is None  # `alerts groups` hides it (no --all)


def test_the_outlook_agrees_with_what_the_worker_would_send(directory: Directory) -> None:
    """At the reminder time shown, the worker's own decision (grouping.due with the
    same latest states) is a reminder; with the newer state known, it is nothing."""
    level1 = flood(directory, 1, 1)
    group = sent_at_once(level1)
    view = outlook(group, {level1.warning_id: level1})
    flush = grouping.due(group, view["at"], latest={level1.warning_id: (1, T0)})
    assert view["next"] == "reminder" and flush is not None and flush.reminder
    newer = {level1.warning_id: (7, T0)}
    assert grouping.due(group, view["at"], latest=newer) is None
    assert outlook(group, {level1.warning_id: flood(directory, 7, 0)})["next"] is None
