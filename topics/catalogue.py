"""The topic catalogue: every topic canhbao reads or writes, in one place.

Names follow ``canhbao.<stage>.<domain?>``. Keys are chosen for ordering:
everything about one station (or one warning, one receiver) lands on one
partition, so it is processed in order and its state lives on one worker.
State and configuration topics are compacted: the latest record per key is
the truth, and a restarted worker rebuilds from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from topics.models import Channel, Domain

DAY_MS = 24 * 60 * 60 * 1000


class Cleanup(StrEnum):
    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: str
    description: str
    partitions: int | None = None  # None: the deployment's default partition count
    cleanup: Cleanup = Cleanup.DELETE
    retention_ms: int | None = 7 * DAY_MS  # None: keep forever (compacted state)
    extra_config: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        cfg = {"cleanup.policy": self.cleanup.value}
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        else:
            cfg["retention.ms"] = "-1"
        cfg.update(self.extra_config)
        return cfg


INGEST_READINGS = "canhbao.ingest.readings"
INGEST_REPORTS = "canhbao.ingest.reports"
WARNINGS = "canhbao.warnings"
RECEIPTS = "canhbao.receipts"
DEADLETTER = "canhbao.deadletter"
STATE_EVALUATE = "canhbao.state.evaluate"
REGROUP_READINGS = "canhbao.regroup.readings"
CORRELATE_WARNINGS = "canhbao.correlate.warnings"
CORRELATE_REPORTS = "canhbao.correlate.reports"
CLOCK = "canhbao.clock"
STATE_DELIVERIES = "canhbao.state.deliveries"
APPROVALS = "canhbao.approvals"
STATE_BROADCASTS = "canhbao.state.broadcasts"
CONTROL_SILENCES = "canhbao.control.silences"
CONTROL_RULES = "canhbao.control.rules"
STATUS = "canhbao.state.services"
COMMANDS = "canhbao.commands"
GROUP_NOTIFICATIONS = "canhbao.group.notifications"
STATE_GROUPS = "canhbao.state.groups"


def readings_topic(domain: Domain) -> str:
    """Validated readings of one domain, so each domain can scale on its own."""
    return f"canhbao.readings.{domain.value}"


def notifications_topic(channel: Channel) -> str:
    return f"canhbao.notifications.{channel.value}"


def _catalogue() -> tuple[TopicSpec, ...]:
    specs: list[TopicSpec] = [
        TopicSpec(
            INGEST_READINGS,
            key="station_id",
            value="Reading (unvalidated bytes)",
            description="Raw sensor and feed readings as the adapters produce them",
        ),
        TopicSpec(
            INGEST_REPORTS,
            key="first area code",
            value="Report (unvalidated bytes)",
            description="Raw human and agency reports",
        ),
    ]
    specs += [
        TopicSpec(
            readings_topic(d),
            key="station_id",
            value="Reading",
            description=f"Validated {d.value} readings, ordered per station",
        )
        for d in Domain
    ]
    specs += [
        TopicSpec(
            WARNINGS,
            key="warning_id",
            value="Warning",
            description="Every warning state change (raise, level change, all-clear)",
            retention_ms=30 * DAY_MS,
        ),
        TopicSpec(
            STATE_EVALUATE,
            key="state key (w|warning, e|rule|subject, q|station|metric, ...)",
            value="engine state (Faust table changelog)",
            description="Warning states and rule/quality state; rebuilt by a restarted worker",
            cleanup=Cleanup.COMPACT,
            retention_ms=None,
        ),
        TopicSpec(
            REGROUP_READINGS,
            key="subject (commune, province or source)",
            value="Reading",
            description="Readings re-keyed for rules that group by commune, province or source",
            retention_ms=1 * DAY_MS,
        ),
        TopicSpec(
            CORRELATE_WARNINGS,
            key="commune code",
            value="Warning",
            description="Each warning state once per affected commune (reports, compound rules)",
            retention_ms=1 * DAY_MS,
        ),
        TopicSpec(
            CORRELATE_REPORTS,
            key="commune code",
            value="Report",
            description="Validated reports, once per commune they name",
        ),
        TopicSpec(
            CLOCK,
            key="none (one tick per partition)",
            value="tick",
            description="Ticks for time-driven rules (silent stations, expiries, removed rules)",
            retention_ms=1 * 60 * 60 * 1000,
        ),
    ]
    specs += [
        TopicSpec(
            notifications_topic(c),
            key="receiver_id",
            value="Notification",
            description=f"Rendered notifications for the {c.value} channel",
        )
        for c in Channel
    ]
    specs += [
        TopicSpec(
            GROUP_NOTIFICATIONS,
            key="group key (receiver|channel|live or exercise|group labels)",
            value="GroupEntry",
            description="Warning states held for aggregation groups (digests, reminders)",
        ),
        TopicSpec(
            STATE_GROUPS,
            key="group key",
            value="aggregation group (Faust table changelog)",
            description="Members and timers of every aggregation group; rebuilt on restart",
            cleanup=Cleanup.COMPACT,
            retention_ms=None,
        ),
    ]
    specs += [
        TopicSpec(
            RECEIPTS,
            key="notification_id",
            value="DeliveryReceipt",
            description="One receipt per delivery attempt",
            retention_ms=30 * DAY_MS,
        ),
        TopicSpec(
            STATE_DELIVERIES,
            key="notification_id",
            value="delivery ledger entry",
            description="Idempotency ledger: a restarted dispatcher never sends twice",
            cleanup=Cleanup.COMPACT,
            retention_ms=None,
        ),
        TopicSpec(
            APPROVALS,
            key="broadcast_id",
            value="broadcast request or operator decision",
            description="Citizen broadcasts waiting for two operators; approve, cancel",
            retention_ms=90 * DAY_MS,
        ),
        TopicSpec(
            STATE_BROADCASTS,
            key="broadcast_id",
            value="broadcast state (Faust table changelog)",
            description="Pending, approved, sent, expired and cancelled broadcasts",
            cleanup=Cleanup.COMPACT,
            retention_ms=None,
        ),
        TopicSpec(
            CONTROL_SILENCES,
            key="silence id",
            value="Silence",
            description="Operator silences (time-bound, with author and reason)",
            partitions=1,
            cleanup=Cleanup.COMPACT,
            retention_ms=None,
        ),
        TopicSpec(
            DEADLETTER,
            key="source topic",
            value="DeadLetter",
            description="Rejected messages with the original bytes and the reason",
            partitions=1,
            retention_ms=30 * DAY_MS,
        ),
        TopicSpec(
            CONTROL_RULES,
            key="rule set name",
            value="rule set",
            description="The active threshold rule set; every worker follows the latest",
            partitions=1,
            cleanup=Cleanup.COMPACT,
            retention_ms=None,
        ),
        TopicSpec(
            STATUS,
            key="service:instance",
            value="ServiceStatus",
            description="Each running worker's rules version and each dispatcher's open "
            "circuit breakers, every 30 s (the console's health page)",
            partitions=1,
            cleanup=Cleanup.COMPACT,
            retention_ms=None,
        ),
        TopicSpec(
            COMMANDS,
            key="warning_id",
            value="operator command",
            description="Operator events: verify, acknowledge, escalate phase, approve, cancel",
            retention_ms=90 * DAY_MS,
        ),
    ]
    return tuple(specs)


CATALOGUE: tuple[TopicSpec, ...] = _catalogue()
BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in CATALOGUE}


def spec(name: str) -> TopicSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the topic catalogue") from None
