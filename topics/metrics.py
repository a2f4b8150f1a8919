"""Every ``canhbao_*`` Prometheus family, on one registry.

Components take a :class:`Metrics` (tests pass one on a fresh ``CollectorRegistry``)
instead of importing module globals; :meth:`Metrics.default` is the process's own,
on prometheus-client's default registry, which ``/metrics`` serves."""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The families, named, documented and labelled as the README's metrics table."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.readings_accepted = Counter(
            "canhbao_readings_accepted_total",
            "Readings that passed validation",
            ["domain"],
            registry=r,
        )
        self.messages_rejected = Counter(
            "canhbao_messages_rejected_total",
            "Messages sent to the dead-letter topic",
            ["source_topic", "stage"],
            registry=r,
        )
        self.offset_gaps = Counter(
            "canhbao_offset_gaps_total",
            "Records of a non-compacted topic a worker read past without handling "
            "(Faust counts them done; any is a fault to investigate)",
            ["topic"],
            registry=r,
        )
        self.readings_evaluated = Counter(
            "canhbao_readings_evaluated_total",
            "Readings the rule engine evaluated",
            ["domain"],
            registry=r,
        )
        self.warning_transitions = Counter(
            "canhbao_warning_transitions_total",
            "Warning state changes",
            ["domain", "hazard", "transition", "level"],
            registry=r,
        )
        self.warning_version_conflicts = Counter(
            "canhbao_warning_version_conflicts_total",
            "Warning states a replay reached at a version already published with other content, "
            "published under the next version instead (see README, State and restarts)",
            ["domain"],
            registry=r,
        )
        self.notifications_routed = Counter(
            "canhbao_notifications_routed_total",
            "Notifications produced by routing",
            ["channel"],
            registry=r,
        )
        self.deliveries = Counter(
            "canhbao_deliveries_total",
            "Delivery attempts by outcome",
            ["channel", "outcome"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "canhbao_delivery_seconds",
            "Time of one delivery attempt",
            ["channel"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.quality_rejections = Counter(
            "canhbao_quality_rejections_total",
            "Readings the data-quality gate kept from the rules, by check",
            ["check"],
            registry=r,
        )
        self.quality_reanchors = Counter(
            "canhbao_quality_reanchors_total",
            "Quality-gate series whose state was dated beyond the present (a wrong clock, an "
            "earlier drill) and was reset, so that the station's readings are judged again",
            registry=r,
        )
        # The operator console (console/).
        self.console_logins = Counter(
            "canhbao_console_logins_total",
            "Console logins by outcome (ok, wrong, throttled)",
            ["outcome"],
            registry=r,
        )
        self.console_actions = Counter(
            "canhbao_console_actions_total",
            "Console actions by action and outcome (sent; refused_role, refused_csrf, "
            "refused_two_person, invalid)",
            ["action", "outcome"],
            registry=r,
        )
        self.console_streams = Gauge(
            "canhbao_console_streams",
            "Live streams (server-sent events) the console is serving now",
            registry=r,
        )
        self.validation_refused = Counter(
            "canhbao_validation_refused_total",
            "Readings and reports the validate stage refused into the dead-letter topic, by "
            "reason (future, implausible, historical, unknown_station, station_mismatch, "
            "unknown_area, invalid, malformed, key_mismatch)",
            ["kind", "reason"],
            registry=r,
        )
        self.commands_applied = Counter(
            "canhbao_commands_total",
            "Operator commands by action and outcome",
            ["action", "outcome"],
            registry=r,
        )
        self.rules_active = Gauge(
            "canhbao_rules_active_info",
            "The rule set version in force (value 1)",
            ["version"],
            registry=r,
        )
        self.rules_reloads = Counter(
            "canhbao_rules_reloads_total",
            "Rule sets received from the control topic",
            ["outcome"],
            registry=r,
        )
        self.notifications_suppressed = Counter(
            "canhbao_notifications_suppressed_total",
            "Notifications held back by inhibition, silences or quiet hours",
            ["channel"],
            registry=r,
        )
        self.broadcasts = Counter(
            "canhbao_broadcasts_total",
            "Citizen broadcasts by what happened to them",
            ["status"],
            registry=r,
        )
        self.feed_http_requests = Counter(
            "canhbao_feed_http_requests_total",
            "Requests to the HTTP ingest API by endpoint and status code",
            ["endpoint", "status"],
            registry=r,
        )
        self.feed_messages = Counter(
            "canhbao_feed_messages_total",
            "Messages an inbound adapter handed to an ingest topic (acknowledged)",
            ["feed", "source", "kind"],
            registry=r,
        )
        self.feed_refused = Counter(
            "canhbao_feed_refused_total",
            "Items an inbound adapter refused before producing them, by reason",
            ["feed", "reason"],
            registry=r,
        )
        self.notifications_held = Counter(
            "canhbao_notifications_held_total",
            "Notifications held for an aggregation group instead of sent at once",
            ["channel"],
            registry=r,
        )
        self.group_flushes = Counter(
            "canhbao_group_flushes_total",
            "Messages sent by aggregation groups: update or reminder, one warning or a digest",
            ["kind", "form"],
            registry=r,
        )
        self.group_members_left = Counter(
            "canhbao_group_members_left_total",
            "Warnings that left an aggregation group unannounced (flap, or newer state elsewhere)",
            ["reason"],
            registry=r,
        )

        self.record_rows = Counter(
            "canhbao_record_rows_total",
            "Rows the recorder wrote to the threat record (new or already there), by table",
            ["table"],
            registry=r,
        )
        self.record_skipped = Counter(
            "canhbao_record_skipped_total",
            "Records the recorder could not read (kept whole in unreadable_records), by topic "
            "and reason (malformed, invalid, empty, unknown_topic)",
            ["topic", "reason"],
            registry=r,
        )
        self.record_batches_retried = Counter(
            "canhbao_record_batches_retried_total",
            "Batches the recorder rolled back and read again (stale_offsets: another member "
            "wrote the partition; database: the database failed)",
            ["reason"],
            registry=r,
        )
        self.record_purged = Counter(
            "canhbao_record_purged_total",
            "Readings the recorder's purge deleted, older than CANHBAO_RECORD_READINGS_DAYS, "
            "by table (readings, evidence_readings)",
            ["table"],
            registry=r,
        )

        # Pipeline health, on every service (README: Metrics and dashboards).
        self.end_to_end_latency = Histogram(
            "canhbao_end_to_end_latency_seconds",
            "From the reading (or report) that decided a warning state being observed to "
            "the first delivery of its notification, per channel and audience (drills: on "
            "the wall clock, through the drill's clock)",
            ["channel", "audience"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "canhbao_consumer_lag_records",
            "Records a consumer group has yet to read: the partitions' end offsets minus the "
            "group's committed offsets, summed over the topic's partitions",
            ["group", "topic"],
            registry=r,
        )
        self.consumer_lag_updated = Gauge(
            "canhbao_consumer_lag_updated_timestamp_seconds",
            "When this process last measured consumer lag (Unix time): a stale value means "
            "the measurement fails",
            registry=r,
        )

    @staticmethod
    @cache
    def default() -> Metrics:
        """The process's metrics, on the default registry (built once)."""
        return Metrics(REGISTRY)

    def set_active_rules(self, version: str) -> None:
        """``canhbao_rules_active_info``: only the version in force has a sample."""
        self.rules_active.clear()
        self.rules_active.labels(version).set(1)
