"""Prometheus metrics (``canhbao_*``), shared by the worker and the dispatchers."""

from __future__ import annotations

import urllib.request

from prometheus_client import Counter, Gauge, Histogram, start_http_server

READINGS_ACCEPTED = Counter(
    "canhbao_readings_accepted_total", "Readings that passed validation", ["domain"]
)
MESSAGES_REJECTED = Counter(
    "canhbao_messages_rejected_total",
    "Messages sent to the dead-letter topic",
    ["source_topic", "stage"],
)
OFFSET_GAPS = Counter(
    "canhbao_offset_gaps_total",
    "Records of a non-compacted topic a worker read past without handling "
    "(Faust counts them done; any is a fault to investigate)",
    ["topic"],
)
READINGS_EVALUATED = Counter(
    "canhbao_readings_evaluated_total", "Readings the rule engine evaluated", ["domain"]
)
WARNING_TRANSITIONS = Counter(
    "canhbao_warning_transitions_total",
    "Warning state changes",
    ["domain", "hazard", "transition", "level"],
)
WARNING_VERSION_CONFLICTS = Counter(
    "canhbao_warning_version_conflicts_total",
    "Warning states a replay reached at a version already published with other content, "
    "published under the next version instead (see README, State and restarts)",
    ["domain"],
)
NOTIFICATIONS_ROUTED = Counter(
    "canhbao_notifications_routed_total", "Notifications produced by routing", ["channel"]
)
DELIVERIES = Counter(
    "canhbao_deliveries_total", "Delivery attempts by outcome", ["channel", "outcome"]
)
DELIVERY_SECONDS = Histogram(
    "canhbao_delivery_seconds",
    "Time of one delivery attempt",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def scrape_counter(port: int, name: str) -> float | None:
    """A counter summed over its labels, read from the ``/metrics`` a process serves on
    127.0.0.1:``port``; None while nothing answers there (not started yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0 disables)."""
    if port:
        start_http_server(port, addr="0.0.0.0")


QUALITY_REJECTIONS = Counter(
    "canhbao_quality_rejections_total",
    "Readings the data-quality gate kept from the rules, by check",
    ["check"],
)
QUALITY_REANCHORS = Counter(
    "canhbao_quality_reanchors_total",
    "Quality-gate series whose state was dated beyond the present (a wrong clock, an "
    "earlier drill) and was reset, so that the station's readings are judged again",
)
VALIDATION_REFUSED = Counter(
    "canhbao_validation_refused_total",
    "Readings and reports the validate stage refused into the dead-letter topic, by "
    "reason (future, implausible, historical, unknown_station, station_mismatch, "
    "unknown_area, invalid, malformed, key_mismatch)",
    ["kind", "reason"],
)
COMMANDS_APPLIED = Counter(
    "canhbao_commands_total", "Operator commands by action and outcome", ["action", "outcome"]
)
RULES_ACTIVE = Gauge(
    "canhbao_rules_active_info", "The rule set version in force (value 1)", ["version"]
)
RULES_RELOADS = Counter(
    "canhbao_rules_reloads_total", "Rule sets received from the control topic", ["outcome"]
)


def set_active_rules(version: str) -> None:
    RULES_ACTIVE.clear()
    RULES_ACTIVE.labels(version).set(1)


NOTIFICATIONS_SUPPRESSED = Counter(
    "canhbao_notifications_suppressed_total",
    "Notifications held back by inhibition, silences or quiet hours",
    ["channel"],
)
BROADCASTS = Counter(
    "canhbao_broadcasts_total", "Citizen broadcasts by what happened to them", ["status"]
)


# The inbound edge (feeds/): what adapters took in and what they refused before producing.
FEED_HTTP_REQUESTS = Counter(
    "canhbao_feed_http_requests_total",
    "Requests to the HTTP ingest API by endpoint and status code",
    ["endpoint", "status"],
)
FEED_MESSAGES = Counter(
    "canhbao_feed_messages_total",
    "Messages an inbound adapter handed to an ingest topic (acknowledged)",
    ["feed", "source", "kind"],
)
FEED_REFUSED = Counter(
    "canhbao_feed_refused_total",
    "Items an inbound adapter refused before producing them, by reason",
    ["feed", "reason"],
)


# Aggregation groups (alerting.grouping, pipeline/agents/group.py).
NOTIFICATIONS_HELD = Counter(
    "canhbao_notifications_held_total",
    "Notifications held for an aggregation group instead of sent at once",
    ["channel"],
)
GROUP_FLUSHES = Counter(
    "canhbao_group_flushes_total",
    "Messages sent by aggregation groups: update or reminder, one warning or a digest",
    ["kind", "form"],
)
GROUP_MEMBERS_LEFT = Counter(
    "canhbao_group_members_left_total",
    "Warnings that left an aggregation group unannounced (flap, or newer state elsewhere)",
    ["reason"],
)
