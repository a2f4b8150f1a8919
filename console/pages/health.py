"""The health page (``/health``): consumer lag per group and topic (Kafka), dead letters
by stage and reason over time and deliveries that gave up by channel (the record).
Every role may read it."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from console.charts import Bucket, bar_chart
from console.i18n import t
from console.pages import RecordUnavailable, Site, Sources
from topics.models import ServiceStatus

log = logging.getLogger(__name__)
_VN = timezone(timedelta(hours=7))

#: The windows the page offers: name -> (length, step of the chart).
WINDOWS = {
    "1h": (timedelta(hours=1), timedelta(minutes=5)),
    "24h": (timedelta(hours=24), timedelta(hours=2)),
    "7d": (timedelta(days=7), timedelta(days=1)),
    "30d": (timedelta(days=30), timedelta(days=3)),
}


def reason_kind(reason: str) -> str:
    """A dead letter's reason without its particulars ("not valid JSON: Expecting ','
    delimiter at line 1" → "not valid JSON"), so that letters group by what went wrong."""
    head = reason.split(":", 1)[0].strip()
    return head[:80] or "(no reason)"


def time_buckets(end: datetime, window: str) -> list[Bucket]:
    length, step = WINDOWS[window]
    start = end - length
    out = []
    at = start
    while at < end:
        nxt = min(end, at + step)
        fmt = "%H:%M" if step < timedelta(days=1) else "%d/%m"
        out.append(Bucket(at.astimezone(_VN).strftime(fmt), at, nxt))
        at = nxt
    return out


def by_bucket(
    rows: list[dict[str, Any]], key: str, bucket_list: list[Bucket]
) -> dict[str, list[float]]:
    """Counts of ``rows`` per value of ``key`` and per bucket (by their ``at``)."""
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(bucket_list))
    for row in rows:
        for i, b in enumerate(bucket_list):
            if b.start <= row["at"] < b.end:
                series[str(row[key])][i] += 1
                break
    return dict(sorted(series.items()))


def summarise_dead_letters(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage and kind of reason: how many, the last one's time and full reason."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["stage"], reason_kind(r["reason"]))].append(r)
    out = [
        {"stage": stage, "reason": kind, "count": len(rs), "last_at": rs[-1]["at"],
         "example": rs[-1]["reason"], "topics": sorted({r["source_topic"] for r in rs})}
        for (stage, kind), rs in groups.items()
    ]  # fmt: skip
    return sorted(out, key=lambda g: (-g["count"], g["stage"], g["reason"]))


def summarise_failures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per channel: deliveries that gave up, receivers affected, the last error."""
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_channel[r["channel"]].append(r)
    out = []
    for channel, rs in by_channel.items():
        receivers = Counter(r["receiver_id"] for r in rs)
        last = rs[-1]
        out.append({
            "channel": channel, "count": len(rs), "receivers": receivers.most_common(5),
            "last_at": last["at"], "last_error": last.get("error") or
            (f"HTTP {last['status_code']}" if last.get("status_code") else "—"),
        })  # fmt: skip
    return sorted(out, key=lambda g: (-g["count"], g["channel"]))


def services(statuses: Iterable[ServiceStatus], now: datetime) -> list[dict[str, Any]]:
    """The running services as the page lists them: a service not heard for three of
    its reporting intervals is marked silent (stopped without a word, or cut off)."""
    out = [
        {"service": s.service, "instance": s.instance, "rules_version": s.rules_version,
         "breakers": s.breakers, "at": s.at,
         "silent": (now - s.at).total_seconds() > 3 * s.every_s}
        for s in statuses
    ]  # fmt: skip
    return sorted(out, key=lambda r: (r["service"], r["instance"]))


def register(app: web.Application, site: Site, sources: Sources) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        lang = site.lang(request)
        window = request.query.get("window", "24h")
        window = window if window in WINDOWS else "24h"
        now = datetime.now(UTC)
        bl = time_buckets(now, window)
        problems: list[str] = []
        lag: list[dict[str, Any]] | None = None
        if sources.kafka is not None:
            try:
                lag = await sources.kafka.lag()
            except Exception as exc:  # the broker away: the page says so, and shows the rest
                log.warning("consumer lag cannot be read: %s", exc)
                problems.append(f"Kafka: {exc}")
        letters = failures = None
        letters_chart = failures_chart = None
        if sources.record is not None:
            try:
                dead = await sources.record.dead_letters(now - WINDOWS[window][0])
                failed = await sources.record.failed_deliveries(now - WINDOWS[window][0])
            except RecordUnavailable as exc:
                problems.append(str(exc))
            else:
                letters, failures = summarise_dead_letters(dead), summarise_failures(failed)
                labels = [b.label for b in bl]
                if dead:
                    letters_chart = bar_chart(labels, by_bucket(dead, "stage", bl),
                                              title=t("health_dead_letters", lang))  # fmt: skip
                if failed:
                    failures_chart = bar_chart(labels, by_bucket(failed, "channel", bl),
                                               title=t("health_failures", lang))  # fmt: skip
        running = services(request.app[site.board].statuses.values(), now)
        return site.render(
            request, "health.html", running=running, window=window, windows=list(WINDOWS), lag=lag,
            letters=letters, failures=failures, letters_chart=letters_chart,
            failures_chart=failures_chart, problems=problems,
        )  # fmt: skip

    app.router.add_get("/health", page)
