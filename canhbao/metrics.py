"""Serving and reading ``/metrics``. The families themselves are ``topics.metrics``."""

from __future__ import annotations

import urllib.request

from prometheus_client import start_http_server

from topics.metrics import Metrics


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


# Transitional names for code not yet handed a Metrics object (issue 13 removes them).
_M = Metrics.default()
READINGS_ACCEPTED = _M.readings_accepted
MESSAGES_REJECTED = _M.messages_rejected
OFFSET_GAPS = _M.offset_gaps
READINGS_EVALUATED = _M.readings_evaluated
WARNING_TRANSITIONS = _M.warning_transitions
WARNING_VERSION_CONFLICTS = _M.warning_version_conflicts
NOTIFICATIONS_ROUTED = _M.notifications_routed
DELIVERIES = _M.deliveries
DELIVERY_SECONDS = _M.delivery_seconds
QUALITY_REJECTIONS = _M.quality_rejections
QUALITY_REANCHORS = _M.quality_reanchors
VALIDATION_REFUSED = _M.validation_refused
COMMANDS_APPLIED = _M.commands_applied
RULES_ACTIVE = _M.rules_active
RULES_RELOADS = _M.rules_reloads
NOTIFICATIONS_SUPPRESSED = _M.notifications_suppressed
BROADCASTS = _M.broadcasts
FEED_HTTP_REQUESTS = _M.feed_http_requests
FEED_MESSAGES = _M.feed_messages
FEED_REFUSED = _M.feed_refused
NOTIFICATIONS_HELD = _M.notifications_held
GROUP_FLUSHES = _M.group_flushes
GROUP_MEMBERS_LEFT = _M.group_members_left
set_active_rules = _M.set_active_rules
