"""``canhbao feed cap``: CAP alerts from upstream agencies to ``canhbao.ingest.reports``.

What a real feed sends is accepted (``feeds/cap_alerts.py`` parses it): CAP 1.2 and 1.1
alerts, alone or wrapped in EDXL-DE 1.0/2.0, from files or by polling a URL that serves
an Atom or RSS index of alerts, an EDXL-DE distribution, or one alert. Documents are read
whole, however the server splits them, up to ``max_document`` bytes ("larger than N"
beyond). One alert becomes at most one ``Report``; how is set by
``config/cap_ingest.yaml`` (``CANHBAO_CAP_INGEST_CONFIG``):

- ``domain`` from the alert's CAP categories, or from its event where the categories say
  nothing (Safety, Rescue, Other, none); ``category`` is the report category the rules
  know when the event says so (flooding, storm, earthquake...), else the event's name;
- ``severity`` is CAP's own (the same five values): the highest among the ``<info>``
  blocks that name one of our communes;
- ``areas``: the communes whose ``geocode`` (config/geography.yaml) appears in an
  ``<area><geocode>`` of the alert, whatever its valueName (``canhbao:commune`` values
  match our commune codes). Geocodes we do not know are ignored; an alert with none we
  know is dead-lettered, since no commune would ever see it. So is an alert whose report
  no rule in force takes (the set last applied on ``canhbao.control.rules``, else the
  rule files, as a worker reads them): it would raise nothing, and must not vanish;
- ``report_id`` is derived from sender and identifier, so polling the same alert again
  does not produce it again; the ids sent are kept in a state file, so neither does a
  restart. A CAP ``Update`` has its own identifier and becomes a new report (it renews
  the warning it corroborates); a ``Cancel`` is logged and counted but sends nothing,
  because a report cannot be withdrawn: the warning it raised clears on its own rules;
- ``reporter`` is the CAP sender; ``text`` the Vietnamese headline and description (else
  the English, else the first ``<info>``); ``observed_at`` the latest of its ``sent``,
  ``effective`` and ``onset`` (now, if that is still ahead: the alert is pending).

Signed alerts (XML-DSig, ``alerting/cap_signature.py``): a sender listed under
``senders:`` in the config has its alerts verified against the certificates given
there; one whose signature is wrong, by another key, or missing (unless that sender's
``required: false``) is dead-lettered with the reason and counted as
``reason="bad_signature"``. What is then read is the alert as signed, not the document
around it. Alerts of senders not listed are not checked.

Only live alerts page people (``cap_alerts.timeliness``): an expired alert is refused;
time is judged by the pipeline's one policy (``pipeline.validate.check_time``), on the
report's ``observed_at``, so what is sent is what the validate stage takes: one whose
latest time is older than the live lateness bound (CANHBAO_MAX_LATENESS) is history,
not notified; one sent ahead of the clock (CANHBAO_MAX_CLOCK_SKEW) or before
CANHBAO_EARLIEST_OBSERVED_AT is dead-lettered. Alerts whose
status is not ``Actual`` are skipped (``Exercise`` too, unless this deployment runs
exercises: CANHBAO_EXERCISE). Nothing is dropped silently: every alert not sent is
logged and counted in ``canhbao_feed_refused_total{feed="cap",reason}``, and those that
could be fixed and replayed go to ``canhbao.deadletter`` with their XML and the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from pydantic import ValidationError

from alerting.cap_signature import SignatureError, Trust, alert_parts
from feeds.cap_alerts import (
    MAX_DOCUMENT,
    Areas,
    CapAlert,
    CapConfig,
    CapError,
    FeedItem,
    ReportRules,
    Skip,
    alerts_in,
    index_items,
    is_alert,
    load_trust,
    parse_alert,
    parse_xml,
    to_report,
)
from pipeline.validate import TimePolicy
from topics.atomic import replace_file
from topics.catalogue import DEADLETTER, INGEST_REPORTS
from topics.connection import Kafka
from topics.metrics import Metrics
from topics.models import DeadLetter, utcnow

if TYPE_CHECKING:
    import aiohttp

    from feeds.sink import Sink

log = logging.getLogger(__name__)

FEED = "cap"
STAGE = "cap-ingest"
KEEP_SEEN = timedelta(days=30)


# --- Ingest ------------------------------------------------------------------------------


class Outcome(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    REJECTED = "rejected"


@dataclass
class Seen:
    """Report ids already sent, with when; kept in a small JSON file."""

    path: Path | None
    ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, now: datetime) -> Seen:
        ids: dict[str, str] = {}
        try:
            if path is not None and path.exists():
                ids = json.loads(path.read_text(encoding="utf-8"))
            cutoff = now - KEEP_SEEN
            kept = {k: v for k, v in ids.items() if datetime.fromisoformat(v) >= cutoff}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise CapError(f"{path}: unreadable state file: {exc}") from exc
        return cls(path, kept)

    def add(self, rid: str, now: datetime) -> None:
        self.ids[rid] = now.isoformat()
        if self.path is not None:
            replace_file(self.path, json.dumps(self.ids))


@dataclass
class CapStats:
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))


class CapIngest:
    def __init__(
        self,
        sink: Sink,
        areas: Areas,
        *,
        config: CapConfig | None = None,
        rules: ReportRules | None = None,
        refresh_rules: Callable[[ReportRules | None], Awaitable[ReportRules | None]] | None = None,
        state: Path | None = None,
        accept_exercise: bool = False,
        policy: TimePolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        trust: Trust | None = None,
    ) -> None:
        self.metrics = metrics or Metrics.default()
        self.sink, self.areas, self.clock = sink, areas, clock
        self.config = config if config is not None else CapConfig()
        # The senders' certificates: given, or read from the files the config names.
        self.trust = trust if trust is not None else load_trust(self.config)
        self.policy = policy if policy is not None else TimePolicy()
        self.rules, self._refresh_rules = rules, refresh_rules
        self.accept_exercise = accept_exercise
        self.seen = Seen.load(state, clock())
        self.stats = CapStats()
        self._fetched: set[tuple[str, str]] = set()  # index entries handled (id, updated)
        self._polled: dict[str, set[str]] = {}  # per URL, digests of the alerts handled

    async def ingest(
        self, data: bytes, origin: str, *, polled: bool = False
    ) -> list[tuple[Outcome, str]]:
        """One document: each CAP alert in it produced as a report, skipped, or
        dead-lettered; and why. ``polled``: it came from a feed, which also carries
        alerts for other provinces (skipped, not dead-lettered)."""
        try:
            root = parse_xml(data)
            alerts = alerts_in(root)
        except CapError as exc:
            return [await self._reject(data, origin, exc)]
        if len(alerts) == 1 and (alerts[0] is root or not self.trust):
            # The document as it came (dead-lettered whole, EDXL-DE envelope included);
            # a signature, though, is checked on the alert's own XML.
            return [await self._alert(alerts[0], data, origin, polled)]
        raw = self._raw_alerts(root, data)
        return [
            await self._alert(el, raw(el), f"{origin}#{n}" if len(alerts) > 1 else origin, polled)
            for n, el in enumerate(alerts, 1)
        ]

    def _raw_alerts(self, root: ET.Element, document: bytes) -> Callable[[ET.Element], bytes]:
        """The XML of each alert inside a document (EDXL-DE, an index), as the sender
        wrote it when signatures are checked: ElementTree renames namespace prefixes,
        which would break a signature."""
        if not self.trust:
            return lambda el: ET.tostring(el, encoding="utf-8")
        found = [el for el in root.iter() if is_alert(el)]
        parts = alert_parts(document)
        if len(parts) != len(found):  # not expected: both read the same document
            return lambda el: ET.tostring(el, encoding="utf-8")
        by_element = {id(el): part for el, part in zip(found, parts, strict=True)}
        return lambda el: by_element.get(id(el)) or ET.tostring(el, encoding="utf-8")

    async def _alert(
        self, el: ET.Element, data: bytes, origin: str, polled: bool = False
    ) -> tuple[Outcome, str]:

        try:
            alert = parse_alert(el)
            if self.trust:
                alert = self._verified(alert, data)
            report = to_report(
                alert,
                self.areas,
                self.config,
                now=self.clock(),
                accept_exercise=self.accept_exercise,
                rules=self.rules,
                policy=self.policy,
            )
        except Skip as skip:
            log.info("cap: %s: skipped: %s", origin, skip)
            self.metrics.feed_refused.labels(FEED, skip.reason).inc()
            return self._count(Outcome.SKIPPED, str(skip))
        except CapError as exc:
            if polled and exc.reason == "no_area":
                # A national feed carries every province's alerts: not an error here.
                log.info("cap: %s: skipped: not for our communes: %s", origin, exc)
                self.metrics.feed_refused.labels(FEED, "not_ours").inc()
                return self._count(Outcome.SKIPPED, f"not for our communes: {exc}")
            return await self._reject(data, origin, exc)
        if report.report_id in self.seen.ids:
            return self._count(Outcome.DUPLICATE, report.report_id)
        await self.sink.send(INGEST_REPORTS, report.areas[0].encode(), report.to_bytes())
        self.seen.add(report.report_id, self.clock())
        self.metrics.feed_messages.labels(FEED, report.reporter, "reports").inc()
        log.info(
            "cap: %s: report %s (%s/%s, %s, %s)",
            origin,
            report.report_id,
            report.domain.value,
            report.category,
            report.severity.value,
            ", ".join(report.areas),
        )
        return self._count(Outcome.SENT, report.report_id)

    def _verified(self, alert: CapAlert, data: bytes) -> CapAlert:
        """The alert as its sender signed it, when its sender is configured; raises
        ``CapError`` (bad_signature) when the signature does not hold."""
        try:
            signed = self.trust.check(alert.sender, data, self.clock())
        except SignatureError as exc:
            raise CapError(
                f"refused: {exc} (sender {alert.sender!r}, whose alerts must be signed "
                "by the certificate configured for it)",
                "bad_signature",
            ) from None
        if signed is None:
            return alert
        verified = parse_alert(parse_xml(signed))
        if verified.sender != alert.sender:  # not expected: the signature covers the root
            raise CapError("refused: the signed alert names another sender", "bad_signature")
        return verified

    async def _reject(self, data: bytes, origin: str, exc: CapError) -> tuple[Outcome, str]:

        log.warning("cap: %s: rejected: %s", origin, exc)
        source = f"cap:{origin}"
        original = data[: self.config.max_document]
        dead = DeadLetter(source_topic=source, original=original, stage=STAGE, reason=str(exc))
        await self.sink.send(DEADLETTER, source.encode(), dead.to_bytes())
        self.metrics.feed_refused.labels(FEED, exc.reason).inc()
        return self._count(Outcome.REJECTED, str(exc))

    def _count(self, outcome: Outcome, detail: str) -> tuple[Outcome, str]:
        self.stats.counts[outcome] += 1
        return outcome, detail

    async def ingest_file(self, path: Path) -> list[tuple[Outcome, str]]:
        limit = self.config.max_document
        data, size = await asyncio.to_thread(_read_capped, path, limit)
        if size > limit:
            refused = CapError(f"{path}: larger than {limit} bytes ({size})", "too_large")
            return [await self._reject(data, str(path), refused)]
        return await self.ingest(data, str(path))

    # -- polling -------------------------------------------------------------------------

    async def poll(self, session: aiohttp.ClientSession, url: str) -> int:
        """Fetch the URL once: an Atom or RSS index, an EDXL-DE distribution or one CAP
        alert. How many new index entries or alerts were handled."""

        if self._refresh_rules is not None:
            self.rules = await self._refresh_rules(self.rules)
        body = await _fetch(session, url, self.config.max_document)
        root = parse_xml(body)
        items = index_items(root)
        if items is None:  # not an index: the alerts are in the document itself
            return await self._poll_alerts(url, root, alerts_in(root), body)
        current, handled, elsewhere = set(), 0, 0
        raw = self._raw_alerts(root, body)
        for item in items:
            current.add(item.key)
            if item.key in self._fetched:
                continue
            if item.geocodes and not self.areas.knows(item.geocodes):
                # The index says where: no need to fetch another province's alert.
                log.debug("cap: %s: entry %s is for %s", url, item.key[0], item.geocodes)
                self.metrics.feed_refused.labels(FEED, "not_ours").inc()
                self._count(Outcome.SKIPPED, f"entry {item.key[0]}: not for our communes")
                self._fetched.add(item.key)
                elsewhere += 1
            elif await self._item(session, url, item, raw):
                self._fetched.add(item.key)
                handled += 1
        self._fetched &= current  # forget entries that left the index
        if handled or elsewhere:
            log.info(
                "cap: %s: %d new entries handled, %d for other areas (not fetched)",
                url,
                handled,
                elsewhere,
            )
        return handled

    async def _poll_alerts(
        self, url: str, root: ET.Element, alerts: list[ET.Element], body: bytes
    ) -> int:
        """Alerts of a document polled again and again: each handled once while it
        stays in the document, so a refused one is not dead-lettered at every poll."""
        seen, current, handled = self._polled.get(url, set()), set(), 0
        whole = len(alerts) == 1 and (alerts[0] is root or not self.trust)
        part = self._raw_alerts(root, body)
        for n, el in enumerate(alerts, 1):
            raw = body if whole else part(el)
            digest = hashlib.sha256(raw).hexdigest()
            current.add(digest)
            if digest not in seen:
                await self._alert(el, raw, url if len(alerts) == 1 else f"{url}#{n}", True)
                handled += 1
        self._polled[url] = current
        return handled

    async def _item(
        self,
        session: aiohttp.ClientSession,
        index_url: str,
        item: FeedItem,
        raw: Callable[[ET.Element], bytes],
    ) -> bool:
        """Ingest one index entry; False when it should be tried again next poll."""

        if item.inline:
            for el in item.inline:
                await self._alert(el, raw(el), index_url, True)
            return True
        if item.link is None:
            log.warning("cap: %s: entry %s links to no CAP message", index_url, item.key[0])
            self.metrics.feed_refused.labels(FEED, "no_link").inc()
            self._count(Outcome.SKIPPED, f"entry {item.key[0]}: no link to a CAP message")
            return True
        url = urljoin(index_url, item.link)
        try:
            body = await _fetch(session, url, self.config.max_document)
        except CapError as exc:
            if exc.reason == "too_large":  # it will not shrink: refuse it once
                await self._reject(b"", url, exc)
                return True
            log.warning("cap: %s: %s; trying again next poll", url, exc)
            return False
        await self.ingest(body, url, polled=True)
        return True

    async def follow(self, url: str, interval: float) -> None:
        """Poll every ``interval`` seconds until cancelled; a failed poll is logged."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    await self.poll(session, url)
                except (OSError, TimeoutError, CapError) as exc:
                    log.warning("cap: polling %s failed: %s", url, exc)
                await asyncio.sleep(interval)


def _read_capped(path: Path, limit: int) -> tuple[bytes, int]:
    """At most ``limit`` bytes of a file, and its size."""
    try:
        with path.open("rb") as f:
            return f.read(limit), path.stat().st_size
    except OSError as exc:
        raise CapError(f"{path}: cannot read: {exc.strerror}") from exc


async def _fetch(session: aiohttp.ClientSession, url: str, limit: int = MAX_DOCUMENT) -> bytes:
    """The whole body, read to the end however the server splits it; refused past
    ``limit`` bytes, before reading more."""
    import aiohttp

    too_large = CapError(f"{url}: larger than {limit} bytes", "too_large")
    body = bytearray()
    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                raise CapError(f"{url}: HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > limit:
                raise too_large
            async for chunk in resp.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise too_large
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CapError(f"{url}: {exc or 'timed out'}") from exc
    return bytes(body)


# --- Rules in force ----------------------------------------------------------------------


async def rules_in_force(
    bootstrap: Kafka, rules_path: Path, current: ReportRules | None
) -> ReportRules | None:
    """The report rules the workers use: the last set on ``canhbao.control.rules`` that
    compiles (``pipeline.rules.control.last_in_force``, as the workers judge it), else the
    rule files (as a worker that starts). On failure the current one stays."""
    from aiokafka.errors import KafkaError

    from pipeline.rules.control import last_in_force
    from pipeline.rules.loader import RuleError, load_rules
    from topics.catalogue import CONTROL_RULES
    from topics.kafka import values

    try:
        in_force = last_in_force(await values(bootstrap, CONTROL_RULES))
        if in_force is not None and current is not None and in_force[0].version == current.version:
            return current
        rules = load_rules(rules_path) if in_force is None else in_force[1]
    except (KafkaError, OSError, RuleError, ValidationError) as exc:
        log.warning(
            "cap: cannot read the rules in force (%s); %s",
            exc,
            f"keeping version {current.version}" if current else "reports are sent unchecked",
        )
        return current
    found = ReportRules.of(rules)
    if current is None or found.version != current.version:
        log.info(
            "cap: rule set %s takes reports of %s",
            found.version,
            ", ".join(f"{d.value}/{c}" for d, c in sorted(found.takes)) or "nothing",
        )
    return found
