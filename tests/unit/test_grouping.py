"""Aggregation groups (alerting.grouping) with an injected clock, and how the notify
stage feeds them (alerting.notify.plan) and turns their flushes into notifications."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerting import grouping as g
from alerting.audiences import Audiences
from alerting.directory import Directory
from alerting.governance import lead_agency
from alerting.messages import flush_renderer, renderer
from alerting.notify import Plan, flush_notification, notification_id, plan
from alerting.routes import RoutingConfig, load_routing
from topics.models import (
    Audience,
    Channel,
    Domain,
    Evidence,
    GroupEntry,
    Phase,
    ScopeTier,
    Severity,
    Transition,
    Warning,
)

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 10, 7, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam: no quiet hours
S = timedelta(seconds=1)
M = timedelta(minutes=1)
LEVEL = {0: ("", Severity.MODERATE), 1: ("vượt ngưỡng dịch", Severity.MODERATE),
         2: ("dịch lớn", Severity.SEVERE)}  # fmt: skip
DENGUE = {"domain": "health", "hazard": "dengue_outbreak"}
SYT = "syt-webhook|webhook|live|domain=health,hazard=dengue_outbreak"


@pytest.fixture
def dengue(directory: Directory) -> Callable[..., Warning]:
    """A per-commune dengue warning state: ``version``, ``level`` (0: cleared)."""

    def build(commune: str, version: int = 1, level: int = 1, previous: int = 0,
              **overrides: Any) -> Warning:  # fmt: skip
        if level == 0:
            transition = Transition.CLEARED
        elif previous == 0:
            transition = Transition.RAISED
        else:
            transition = Transition.ESCALATED if level > previous else Transition.DEESCALATED
        name, severity = LEVEL[level if level else previous]
        fields: dict[str, Any] = dict(
            warning_id=f"health.dengue.commune:{commune}", version=version,
            rule_id="health.dengue.commune", domain=Domain.HEALTH, hazard="dengue_outbreak",
            subject=commune, transition=transition, level=level,
            level_name=name if level else "", previous_level=previous, severity=severity,
            areas=[directory.area(commune)], scope_tier=ScopeTier.COMMUNE,
            lead_agency=lead_agency(directory, Domain.HEALTH, Phase.INCIDENT),
            evidence=[Evidence(station_id=f"cdc-{commune}", metric="dengue_cases_weekly",
                               value=25 + version, observed_at=T0, threshold=18)],
            raised_at=T0, updated_at=T0 + version * M,
            labels={"disease": "dengue", **DENGUE},
            annotations={"summary_vi": "Số ca sốt xuất huyết vượt kênh dịch",
                         "summary_en": "Dengue cases above the endemic channel"},
        )  # fmt: skip
        fields.update(overrides)
        return Warning(**fields)

    return build


def entry(w: Warning, at: datetime, *, sent: bool = False, wait: float = 120,
          interval: float = 600, repeat: float | None = 4 * 3600,
          key: str = SYT) -> GroupEntry:  # fmt: skip
    return GroupEntry(
        group_key=key, labels=DENGUE, receiver_id="syt-webhook", channel=Channel.WEBHOOK,
        audience=Audience.AGENCY, address="http://x/hooks/syt", warning=w, group_wait=wait,
        group_interval=interval, repeat_interval=repeat, sent=sent, routed_at=at,
    )  # fmt: skip


def feed(group: g.Group | None, *entries: GroupEntry) -> g.Group:
    for e in entries:
        group, _ = g.receive(group, e, e.routed_at)
    assert group is not None
    return group


def ids(flush: g.Flush | None) -> list[str]:
    assert flush is not None
    return [w.subject for w in flush.warnings]


# --- Alertmanager's semantics ---------------------------------------------------------


def test_group_wait_gathers_a_burst_into_one_flush(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0),
                 entry(dengue("bn-kinh-bac"), T0 + 30 * S),
                 entry(dengue("bn-hap-linh"), T0 + 90 * S))  # fmt: skip
    assert g.due(group, T0 + 119 * S) is None  # group_wait counts from the first arrival
    flush = g.due(group, T0 + 120 * S)
    assert flush is not None and flush.kind == "update" and flush.seq == 1
    assert ids(flush) == ["bn-hap-linh", "bn-kinh-bac", "bn-vu-ninh"]
    assert flush.changed == {w.warning_id for w in flush.warnings}


def test_group_interval_spaces_later_flushes_and_nothing_new_sends_nothing(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0))
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    assert g.due(group, T0 + 30 * M) is None  # nothing changed: no message at all
    group = feed(group, entry(dengue("bn-kinh-bac"), T0 + 3 * M),
                 entry(dengue("bn-vu-ninh", version=2, level=2, previous=1), T0 + 4 * M,
                       sent=True))  # fmt: skip
    assert g.due(group, T0 + 11 * M) is None  # 9 minutes after the last flush
    flush = g.due(group, T0 + 12 * M)
    assert flush is not None and flush.seq == 2
    # Every member is listed; only the new one counts as changed (v2 was sent already).
    assert ids(flush) == ["bn-vu-ninh", "bn-kinh-bac"]
    assert flush.changed == {"health.dengue.commune:bn-kinh-bac"}


def test_repeat_interval_reminds_of_what_is_still_active(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0), entry(dengue("bn-kinh-bac"), T0))
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    group = feed(group, entry(dengue("bn-kinh-bac", version=2, level=0, previous=1), T0 + 5 * M))
    group = g.flushed(group, g.due(group, T0 + 12 * M), T0 + 12 * M)  # type: ignore[arg-type]
    assert g.due(group, T0 + 12 * M + 4 * 60 * M - S) is None
    reminder = g.due(group, T0 + 12 * M + 4 * 60 * M)
    assert reminder is not None and reminder.reminder and reminder.changed == frozenset()
    assert ids(reminder) == ["bn-vu-ninh"]  # the cleared one left once its all-clear went
    after = g.flushed(group, reminder, T0 + 4 * 60 * M + 12 * M)
    assert after.reminders == 1
    assert g.due(after, T0 + 8 * 60 * M + 11 * M) is None  # the next one 4 h later
    assert g.due(after, T0 + 8 * 60 * M + 12 * M) is not None


def test_no_reminder_without_repeat_interval_or_active_members(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0, repeat=None))
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    assert g.due(group, T0 + 48 * 60 * M) is None


# --- Early-warning rules ----------------------------------------------------------------


def test_an_urgent_state_is_sent_at_once_and_the_rest_still_waits(
    dengue, directory, routing, audiences
) -> None:
    moderate = plan_for(dengue("bn-vu-ninh"), directory, routing, audiences)
    assert syt(moderate.notifications) == []  # held for the digest
    (held,) = syt_entries(moderate)
    assert not held.sent and held.group_wait == 120 and held.group_key == SYT

    severe = plan_for(dengue("bn-kinh-bac", version=2, level=2, previous=1), directory,
                      routing, audiences)  # fmt: skip
    (now,) = syt(severe.notifications)  # not delayed by group_wait: it goes now, alone
    assert now.notification_id.endswith(":v2:syt-webhook:webhook")
    (told,) = syt_entries(severe)
    assert told.sent  # the group only keeps count

    group = feed(None, held.model_copy(update={"routed_at": T0}),
                 told.model_copy(update={"routed_at": T0 + 10 * S}))  # fmt: skip
    assert g.due(group, T0 + 119 * S) is None  # the moderate one still waits
    flush = g.due(group, T0 + 120 * S)
    assert ids(flush) == ["bn-kinh-bac", "bn-vu-ninh"]
    assert flush is not None and flush.changed == {"health.dengue.commune:bn-vu-ninh"}


def test_an_all_clear_is_delivered_then_the_warning_leaves(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0))
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    group, outcome = g.receive(group, entry(dengue("bn-vu-ninh", 2, level=0, previous=1),
                                            T0 + 20 * M), T0 + 20 * M)  # fmt: skip
    assert outcome == "changed"
    flush = g.due(group, T0 + 22 * M)
    assert flush is not None and [w.transition for w in flush.warnings] == [Transition.CLEARED]
    group = g.flushed(group, flush, T0 + 22 * M)
    assert not group.members["health.dengue.commune:bn-vu-ninh"].listed
    assert g.due(group, T0 + 10 * 60 * M) is None  # no reminder of a cleared warning
    # A replay of the raise or the all-clear cannot bring it back...
    for w in (dengue("bn-vu-ninh"), dengue("bn-vu-ninh", 2, level=0, previous=1)):
        assert g.receive(group, entry(w, T0 + 30 * M), T0 + 30 * M)[1] == "stale"
    # ...and the group goes once its tombstone expires.
    assert g.settle(group, T0 + 22 * M + g.TOMBSTONE, {})[0] is None


def test_raised_and_cleared_before_anyone_heard_is_a_flap_never_announced(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0), entry(dengue("bn-kinh-bac"), T0))
    group, outcome = g.receive(group, entry(dengue("bn-kinh-bac", 2, level=0, previous=1),
                                            T0 + M), T0 + M)  # fmt: skip
    assert outcome == "flap"
    assert ids(g.due(group, T0 + 2 * M)) == ["bn-vu-ninh"]
    only_flap = feed(None, entry(dengue("bn-hap-linh"), T0),
                     entry(dengue("bn-hap-linh", 2, level=0, previous=1), T0 + M))  # fmt: skip
    assert g.due(only_flap, T0 + 60 * M) is None


def test_a_burst_after_a_quiet_spell_is_gathered_for_group_wait_too(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0))
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    group = feed(group, entry(dengue("bn-kinh-bac"), T0 + 60 * M))
    assert g.due(group, T0 + 61 * M) is None  # Alertmanager would send now, alone
    group = feed(group, entry(dengue("bn-hap-linh"), T0 + 61 * M))
    assert ids(g.due(group, T0 + 62 * M)) == ["bn-hap-linh", "bn-kinh-bac", "bn-vu-ninh"]


def test_group_wait_counts_from_routing_so_a_late_worker_flushes_at_once(dengue) -> None:
    late = entry(dengue("bn-vu-ninh"), T0)
    group, _ = g.receive(None, late, T0 + 10 * M)  # the group stage was down 10 minutes
    assert g.due(group, T0 + 10 * M) is not None


def test_a_member_whose_newer_state_went_elsewhere_sits_out_then_leaves(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0), entry(dengue("bn-kinh-bac"), T0))
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    group = feed(group, entry(dengue("bn-hap-linh"), T0 + 20 * M))
    # bn-vu-ninh v2 was routed elsewhere (say, silenced): canhbao.warnings shows it.
    latest = {"health.dengue.commune:bn-vu-ninh": (2, T0 + 21 * M)}
    assert ids(g.due(group, T0 + 22 * M, latest=latest)) == ["bn-hap-linh", "bn-kinh-bac"]
    settled, left = g.settle(group, T0 + 21 * M + g.SETTLE, latest)
    assert left == ["health.dengue.commune:bn-vu-ninh"] and settled is not None
    assert not settled.members["health.dengue.commune:bn-vu-ninh"].listed


def test_reminders_wait_for_the_views_and_leave_out_what_is_held(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0), entry(dengue("bn-kinh-bac"), T0))
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    later = T0 + 5 * 60 * M
    assert g.due(group, later, reminders=False) is None
    silenced = ids(g.due(group, later, held=lambda w: w.subject == "bn-vu-ninh"))
    assert silenced == ["bn-kinh-bac"]
    assert g.due(group, later, held=lambda w: True) is None


def test_replays_change_nothing(dengue) -> None:
    e = entry(dengue("bn-vu-ninh"), T0)
    group = feed(None, e)
    again, outcome = g.receive(group, e, T0 + S)
    assert outcome == "stale"
    assert again.members == group.members


def test_state_survives_a_restart_as_json(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0), entry(dengue("bn-kinh-bac"), T0))
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    group = feed(group, entry(dengue("bn-hap-linh"), T0 + 3 * M))
    restored = g.Group.model_validate(json.loads(json.dumps(group.model_dump(mode="json"))))
    assert restored == group
    for at in (T0 + 11 * M, T0 + 12 * M, T0 + 5 * 60 * M):
        assert g.due(restored, at) == g.due(group, at)


def test_group_keys_keep_drills_apart_and_name_the_labels() -> None:
    live = g.group_key("syt-webhook", Channel.WEBHOOK, DENGUE, exercise=False)
    drill = g.group_key("syt-webhook", Channel.WEBHOOK, DENGUE, exercise=True)
    assert live == SYT and drill != live
    assert g.group_labels(None, {}, "w:1") == {"warning_id": "w:1"}
    assert g.group_labels(("area",), {"area": ["b", "a", "b"]}, "w") == {"area": "a,b"}
    assert g.group_id(live) == g.group_id(live) != g.group_id(drill)


def test_a_group_knows_when_it_next_has_something_to_do(dengue) -> None:
    group = feed(None, entry(dengue("bn-vu-ninh"), T0))
    assert g.next_wake(group) == T0 + 2 * M  # group_wait
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    assert g.next_wake(group) == T0 + 2 * M + 4 * 60 * M  # the reminder
    group = feed(group, entry(dengue("bn-vu-ninh", 2, level=0, previous=1), T0 + 3 * M))
    assert g.next_wake(group) == T0 + 12 * M  # group_interval after the last flush
    group = g.flushed(group, g.due(group, T0 + 12 * M), T0 + 12 * M)  # type: ignore[arg-type]
    assert g.next_wake(group) == T0 + 12 * M + g.TOMBSTONE  # then it can go
    quiet = feed(None, entry(dengue("bn-kinh-bac"), T0, repeat=None))
    quiet = g.flushed(quiet, g.due(quiet, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    assert g.next_wake(quiet) is None  # nothing until a new state arrives


def test_a_group_key_stays_short_whatever_the_labels() -> None:
    many = {"area": ",".join(f"commune-{i}" for i in range(100))}
    key = g.group_key("syt-webhook", Channel.WEBHOOK, many, exercise=False)
    assert len(key) < 120 and key.startswith("syt-webhook|webhook|live|sha256=")


# --- The notify stage: what goes to the groups, what a flush sends --------------------


@pytest.fixture(scope="module")
def routing() -> RoutingConfig:
    return load_routing(REPO / "config/routes.yaml")


@pytest.fixture(scope="module")
def audiences() -> Audiences:
    return Audiences.load(REPO / "config/audiences.yaml")


def plan_for(w: Warning, directory: Directory, routing: RoutingConfig,
             audiences: Audiences) -> Plan:  # fmt: skip
    return plan(w, routing, directory, audiences, renderer(directory), active=[], silences=[],
                now=T0)  # fmt: skip


def syt(notes: list[Any]) -> list[Any]:
    return [n for n in notes if n.receiver_id == "syt-webhook"]


def syt_entries(p: Plan) -> list[GroupEntry]:
    return [e for e in p.grouped if e.receiver_id == "syt-webhook"]


def test_ungrouped_routes_send_as_today_and_keep_time_for_reminders(
    dap_cau, ctx, make_reading, directory, routing, audiences
) -> None:
    from tests.helpers import step

    flood = step(dap_cau, None, make_reading(4.35), ctx)
    assert flood is not None
    p = plan_for(flood, directory, routing, audiences)
    n = next(n for n in p.notifications if n.receiver_id == "snnmt-webhook")
    assert n.notification_id == notification_id(flood, "snnmt-webhook", Channel.WEBHOOK)
    # Every agency message went out now; the groups only count them, for reminders.
    assert p.grouped and all(e.sent for e in p.grouped)
    assert {(e.receiver_id, e.channel) for e in p.grouped} == {
        (n.receiver_id, n.channel) for n in p.notifications
    }
    assert all(e.labels == {"warning_id": flood.warning_id} for e in p.grouped)
    assert all(e.repeat_interval == 4 * 3600 and e.group_wait == 0 for e in p.grouped)


def test_citizens_and_cap_are_never_grouped(dengue, directory, routing, audiences) -> None:
    severe = dengue("bn-vu-ninh", 2, level=2, previous=1)
    p = plan_for(severe, directory, routing, audiences)
    assert any(n.channel is Channel.CAP for n in p.notifications)  # partners, level >= 2
    assert not [e for e in p.grouped if e.channel in (Channel.CAP, Channel.LOUDSPEAKER)]


def test_a_digest_flush_is_one_notification_with_a_unique_stable_id(
    dengue, directory, routing, audiences
) -> None:
    entries = [syt_entries(plan_for(dengue(c), directory, routing, audiences))[0]
               for c in ("bn-vu-ninh", "bn-kinh-bac", "bn-hap-linh")]  # fmt: skip
    group = feed(None, *[e.model_copy(update={"routed_at": T0}) for e in entries])
    flush = g.due(group, T0 + 2 * M)
    assert flush is not None
    note = flush_notification(group, flush, flush_renderer())
    assert note.receiver_id == "syt-webhook" and note.address.endswith("/hooks/syt")
    assert note.payload["type"] == "canhbao.digest"
    assert len(note.payload["warnings"]) == 3
    assert note.notification_id.startswith(f"{group.id}:f1:")
    assert note.warning_id == group.id and note.warning_version == 1
    assert flush_notification(group, flush, flush_renderer()).notification_id == (
        note.notification_id
    )  # a replayed flush keeps its id: the dispatcher's ledger drops it
    nxt = feed(g.flushed(group, flush, T0 + 2 * M), entries[0].model_copy(
        update={"warning": dengue("bn-vu-ninh", 2, level=0, previous=1),
                "routed_at": T0 + 3 * M}))  # fmt: skip
    second = g.due(nxt, T0 + 12 * M)
    assert second is not None
    assert flush_notification(nxt, second, flush_renderer()).notification_id != (
        note.notification_id
    )


def test_a_single_warning_flush_is_todays_message(dengue, directory, routing, audiences) -> None:
    w = dengue("bn-vu-ninh")
    (e,) = syt_entries(plan_for(w, directory, routing, audiences))
    group = feed(None, e.model_copy(update={"routed_at": T0}))
    flush = g.due(group, T0 + 2 * M)
    assert flush is not None
    note = flush_notification(group, flush, flush_renderer())
    today = renderer(directory)(w, Channel.WEBHOOK, "vi", Audience.AGENCY)
    assert note.notification_id == notification_id(w, "syt-webhook", Channel.WEBHOOK)
    assert (note.subject, note.body, note.payload) == (today.subject, today.body, today.payload)

    group = g.flushed(group, flush, T0 + 2 * M)
    reminder = g.due(group, T0 + 2 * M + 4 * 60 * M)
    assert reminder is not None
    again = flush_notification(group, reminder, flush_renderer())
    assert again.notification_id == note.notification_id + ":reminder1"
    assert again.subject.startswith("[NHẮC LẠI] ") and again.payload["reminder"] is True


# --- What an operator sees (`canhbao alerts groups`) -------------------------------------


def test_an_operator_sees_who_waits_for_what_and_when_it_goes(dengue) -> None:
    from canhbao.operator_cli import describe_group

    group = feed(None, entry(dengue("bn-vu-ninh"), T0), entry(dengue("bn-kinh-bac"), T0 + S))
    line = describe_group(group, T0 + 30 * S)
    assert "webhook" in line and "-> syt-webhook (agency): 2 warning(s)" in line
    assert "dengue_outbreak L1 bn-kinh-bac, dengue_outbreak L1 bn-vu-ninh" in line
    assert "sends 2 change(s) at 10:02:00 07/10" in line  # group_wait after the first, ICT
    assert "(due" not in line and "0 sent, 0 reminder(s)" in line
    late = describe_group(group, T0 + 3 * M)  # a worker down: past its time
    assert "(due: on the next clock tick)" in late


def test_after_a_flush_the_operator_sees_the_next_reminder(dengue) -> None:
    from canhbao.operator_cli import describe_group

    group = feed(None, entry(dengue("bn-vu-ninh"), T0))
    group = g.flushed(group, g.due(group, T0 + 2 * M), T0 + 2 * M)  # type: ignore[arg-type]
    line = describe_group(group, T0 + 3 * M)
    assert "reminder at 14:02:00 07/10" in line and "1 sent" in line
    cleared = feed(group, entry(dengue("bn-vu-ninh", version=2, level=0, previous=1), T0 + 5 * M))
    cleared = g.flushed(cleared, g.due(cleared, T0 + 12 * M), T0 + 12 * M)  # type: ignore[arg-type]
    assert "0 warning(s) [-]; nothing to send" in describe_group(cleared, T0 + 13 * M)
