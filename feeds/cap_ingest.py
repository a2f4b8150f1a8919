"""``canhbao feed cap``: CAP 1.2 alerts from upstream agencies to ``canhbao.ingest.reports``.

Alerts come from files or from polling a CAP Atom feed (entries link to the CAP
documents, or carry them inline). One alert becomes at most one ``Report``:

- ``domain`` from the first ``<category>`` that maps (Met → water, Geo → geology,
  Env/CBRNE/Fire → environment, Health → health, Security → cyber, Infra → energy);
  Safety, Rescue, Transport and Other have no canhbao domain: the alert is dead-lettered;
- ``severity`` is CAP's own (the same five values); ``category`` is the report category
  the rules know when the event says so (flooding, dike_breach, defacement, intrusion),
  else the event's name;
- ``areas``: the communes whose ``geocode`` (config/geography.yaml) appears in an
  ``<area><geocode>`` of the alert, whatever its valueName (``canhbao:commune`` values
  match our commune codes). Geocodes we do not know are ignored; an alert with none we
  know is dead-lettered, since no commune would ever see it;
- ``report_id`` is derived from sender and identifier, so polling the same alert again
  does not produce it again; the ids sent are kept in a state file, so neither does a
  restart. A CAP ``Update`` has its own identifier and becomes a new report (it renews
  the warning it corroborates); a ``Cancel`` is logged and counted but sends nothing,
  because a report cannot be withdrawn: the warning it raised clears on its own rules.
- ``reporter`` is the CAP sender; ``text`` the Vietnamese headline and description (the
  first ``<info>`` when there is no Vietnamese one); ``observed_at`` when it was sent.
  Expired alerts are skipped, and so are those whose status is not
  ``Actual`` (``Exercise`` too, unless this deployment runs exercises: CANHBAO_EXERCISE).

XML safety: documents are parsed with the standard library after a first pass that
refuses any DTD (``<!DOCTYPE``). Entity declarations can only live in a DTD, so this
rules out entity-expansion bombs and external entities (XXE) outright, which is what
defusedxml's ``forbid_dtd`` does; defusedxml itself is not a dependency of the project.
CAP never needs a DTD.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin
from xml.parsers import expat

from pydantic import ValidationError

from feeds.atomic import replace_file
from topics.catalogue import DEADLETTER, INGEST_REPORTS
from topics.models import DeadLetter, Domain, Report, Severity, utcnow

if TYPE_CHECKING:
    import aiohttp

    from alerting.directory import Directory
    from feeds.sink import Sink

log = logging.getLogger(__name__)

FEED = "cap"
STAGE = "cap-ingest"
CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
MAX_DOCUMENT = 1024 * 1024  # a CAP message is kilobytes; a feed of them, a few hundred
KEEP_SEEN = timedelta(days=30)

_DOMAIN_BY_CATEGORY: dict[str, Domain] = {
    "Met": Domain.WATER,  # CAP "Met" covers floods; alerting/cap.py writes water as Met
    "Geo": Domain.GEOLOGY,
    "Env": Domain.ENVIRONMENT,
    "CBRNE": Domain.ENVIRONMENT,  # chemical spills and releases
    "Fire": Domain.ENVIRONMENT,  # forest fires
    "Health": Domain.HEALTH,
    "Security": Domain.CYBER,  # the provincial police lead both
    "Infra": Domain.ENERGY,  # power, fuel and gas supply
}
# The report categories the rules know, by the words of the event (Vietnamese, English).
_CATEGORY_WORDS: dict[Domain, list[tuple[str, re.Pattern[str]]]] = {
    Domain.WATER: [
        ("dike_breach", re.compile(r"\b(vỡ đê|sự cố đê|dike|levee)\b", re.IGNORECASE)),
        ("flooding", re.compile(r"\b(lũ|ngập|flood\w*|inundation)\b", re.IGNORECASE)),
    ],
    Domain.CYBER: [
        ("defacement", re.compile(r"\b(thay đổi giao diện|deface\w*)\b", re.IGNORECASE)),
        ("intrusion", re.compile(r"\b(xâm nhập|intrusion|compromise\w*)\b", re.IGNORECASE)),
    ],
}


class CapError(ValueError):
    """Why a document cannot become a report (goes to the dead-letter topic)."""


class _DoctypeRefused(Exception):
    pass


def parse_xml(data: bytes) -> ET.Element:
    """A parsed document, refusing any DTD (see the module docstring)."""

    def refuse(*_: object) -> None:
        raise _DoctypeRefused

    probe = expat.ParserCreate()
    probe.StartDoctypeDeclHandler = refuse
    try:
        probe.Parse(data, True)
    except _DoctypeRefused:
        raise CapError("refused: the document declares a DTD (CAP needs none)") from None
    except expat.ExpatError as exc:
        raise CapError(f"not well-formed XML: {exc}") from None
    return ET.fromstring(data)


# --- CAP -> Report -----------------------------------------------------------------------


@dataclass(frozen=True)
class CapInfo:
    language: str
    categories: list[str]
    event: str
    severity: str
    headline: str
    description: str
    expires: str | None
    geocodes: list[tuple[str, str]]


@dataclass(frozen=True)
class CapAlert:
    identifier: str
    sender: str
    sent: str
    status: str
    msg_type: str
    references: str
    infos: list[CapInfo]


def _text(el: ET.Element, tag: str) -> str:
    return (el.findtext(f"{{{CAP_NS}}}{tag}") or "").strip()


def _info(el: ET.Element) -> CapInfo:
    q = f"{{{CAP_NS}}}"
    geocodes = [
        (_text(g, "valueName"), _text(g, "value"))
        for area in el.iter(f"{q}area")
        for g in area.iter(f"{q}geocode")
    ]
    return CapInfo(
        language=_text(el, "language") or "en-US",  # CAP's default language
        categories=[(c.text or "").strip() for c in el.iter(f"{q}category")],
        event=_text(el, "event"),
        severity=_text(el, "severity"),
        headline=_text(el, "headline"),
        description=_text(el, "description"),
        expires=_text(el, "expires") or None,
        geocodes=geocodes,
    )


def parse_alert(root: ET.Element) -> CapAlert:
    if root.tag != f"{{{CAP_NS}}}alert":
        raise CapError(f"not a CAP 1.2 alert: the root element is {root.tag}")
    alert = CapAlert(
        identifier=_text(root, "identifier"),
        sender=_text(root, "sender"),
        sent=_text(root, "sent"),
        status=_text(root, "status"),
        msg_type=_text(root, "msgType"),
        references=_text(root, "references"),
        infos=[_info(el) for el in root.findall(f"{{{CAP_NS}}}info")],
    )
    missing = [
        n for n in ("identifier", "sender", "sent", "status", "msg_type") if not getattr(alert, n)
    ]
    if missing:
        raise CapError(f"the alert has no {', '.join(missing)}")
    return alert


def cap_datetime(value: str, what: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise CapError(f"{what} {value!r} is not a CAP date-time") from None
    if at.tzinfo is None:
        raise CapError(f"{what} {value!r} has no UTC offset")
    return at


def report_id(sender: str, identifier: str) -> str:
    """Stable per (sender, identifier), the pair CAP makes unique; readable prefix."""
    digest = hashlib.sha256(f"{sender},{identifier}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9._:-]+", "-", identifier.lower()).strip("-:.") or "alert"
    return f"cap:{slug[: 128 - 17]}:{digest}"


class Skip(Exception):
    """A valid alert that deliberately becomes no report (cancel, test, expired...)."""


@dataclass(frozen=True)
class Areas:
    """Our communes by CAP geocode."""

    by_geocode: dict[str, str]
    codes: frozenset[str]

    @classmethod
    def of(cls, directory: Directory) -> Areas:
        communes = directory.geography.communes
        return cls(
            {c.geocode: c.code for c in communes if c.geocode}, frozenset(c.code for c in communes)
        )

    def match(self, geocodes: Iterable[tuple[str, str]]) -> list[str]:
        found = []
        for name, value in geocodes:
            if name == "canhbao:commune" and value in self.codes:
                found.append(value)
            elif value in self.by_geocode:
                found.append(self.by_geocode[value])
        return list(dict.fromkeys(found))


def to_report(alert: CapAlert, areas: Areas, *, now: datetime, accept_exercise: bool) -> Report:
    """The report an alert becomes; raises ``Skip`` or ``CapError``."""
    _check_kind(alert, accept_exercise)
    if not alert.infos:
        raise CapError("the alert has no <info>")
    info = next((i for i in alert.infos if i.language.lower().startswith("vi")), alert.infos[0])
    if info.expires and cap_datetime(info.expires, "expires") <= now:
        raise Skip(f"expired at {info.expires}")
    domain = _domain(alert.infos)
    codes = areas.match(g for i in alert.infos for g in i.geocodes)
    if not codes:
        known = sorted({v for i in alert.infos for _, v in i.geocodes})
        raise CapError(f"no geocode matches a commune of ours (the alert has {known or 'none'})")
    try:
        severity = Severity(info.severity)
    except ValueError:
        raise CapError(f"severity {info.severity!r} is not a CAP severity") from None
    text = "\n".join(t for t in (info.headline or info.event, info.description) if t)
    try:
        return Report(
            report_id=report_id(alert.sender, alert.identifier),
            domain=domain,
            category=_category(domain, alert.infos),
            severity=severity,
            areas=codes,
            # When the agency issued it: onset and effective may lie in the future.
            observed_at=cap_datetime(alert.sent, "sent"),
            reporter=alert.sender[:128],
            text=text[:4000],
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise CapError(f"invalid report: {problems}") from None


def _check_kind(alert: CapAlert, accept_exercise: bool) -> None:
    if alert.status == "Exercise" and not accept_exercise:
        raise Skip("an exercise, and this deployment is not running one (CANHBAO_EXERCISE)")
    if alert.status not in ("Actual", "Exercise"):
        raise Skip(f"status {alert.status}: not a real alert")
    if alert.msg_type == "Cancel":
        raise Skip(f"a Cancel of {alert.references or 'an earlier alert'}: nothing to send")
    if alert.msg_type not in ("Alert", "Update"):
        raise Skip(f"msgType {alert.msg_type}: not an alert")


def _domain(infos: list[CapInfo]) -> Domain:
    cats = [c for i in infos for c in i.categories]
    for cat in cats:
        if cat in _DOMAIN_BY_CATEGORY:
            return _DOMAIN_BY_CATEGORY[cat]
    raise CapError(f"no canhbao domain for the CAP categories {cats or 'none'}")


def _category(domain: Domain, infos: list[CapInfo]) -> str:
    words = " ".join(f"{i.event} {i.headline}" for i in infos)
    for name, pattern in _CATEGORY_WORDS.get(domain, []):
        if pattern.search(words):
            return name
    english = next((i for i in infos if i.language.lower().startswith("en")), infos[0])
    event = re.sub(r"\s+", "_", (english.event or domain.value).strip().lower())
    return event[:64]


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
        state: Path | None = None,
        accept_exercise: bool = False,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sink, self.areas, self.clock = sink, areas, clock
        self.accept_exercise = accept_exercise
        self.seen = Seen.load(state, clock())
        self.stats = CapStats()
        self._fetched: set[tuple[str, str]] = set()  # Atom entries handled (id, updated)

    async def ingest(self, data: bytes, origin: str) -> tuple[Outcome, str]:
        """One CAP document: produced as a report, skipped, or dead-lettered; and why."""
        from canhbao.metrics import FEED_MESSAGES, FEED_REFUSED

        try:
            alert = parse_alert(parse_xml(data))
            report = to_report(
                alert, self.areas, now=self.clock(), accept_exercise=self.accept_exercise
            )
        except Skip as skip:
            log.info("cap: %s: skipped: %s", origin, skip)
            return self._count(Outcome.SKIPPED, str(skip))
        except (CapError, ET.ParseError) as exc:
            log.warning("cap: %s: rejected: %s", origin, exc)
            await self._dead(data, origin, str(exc))
            FEED_REFUSED.labels(FEED, "invalid").inc()
            return self._count(Outcome.REJECTED, str(exc))
        if report.report_id in self.seen.ids:
            return self._count(Outcome.DUPLICATE, report.report_id)
        await self.sink.send(INGEST_REPORTS, report.areas[0].encode(), report.to_bytes())
        self.seen.add(report.report_id, self.clock())
        FEED_MESSAGES.labels(FEED, report.reporter, "reports").inc()
        log.info(
            "cap: %s: report %s (%s, %s)",
            origin,
            report.report_id,
            report.domain.value,
            ", ".join(report.areas),
        )
        return self._count(Outcome.SENT, report.report_id)

    def _count(self, outcome: Outcome, detail: str) -> tuple[Outcome, str]:
        self.stats.counts[outcome] += 1
        return outcome, detail

    async def _dead(self, data: bytes, origin: str, reason: str) -> None:
        source = f"cap:{origin}"
        dead = DeadLetter(
            source_topic=source, original=data[:MAX_DOCUMENT], stage=STAGE, reason=reason
        )
        await self.sink.send(DEADLETTER, source.encode(), dead.to_bytes())

    async def ingest_file(self, path: Path) -> tuple[Outcome, str]:
        return await self.ingest(await asyncio.to_thread(path.read_bytes), str(path))

    # -- polling -------------------------------------------------------------------------

    async def poll(self, session: aiohttp.ClientSession, url: str) -> int:
        """Fetch the feed (or a single alert) once; how many new entries were handled."""
        body = await _fetch(session, url)
        root = parse_xml(body)
        if root.tag == f"{{{CAP_NS}}}alert":
            await self.ingest(body, url)
            return 1
        if root.tag != f"{{{ATOM_NS}}}feed":
            raise CapError(f"{url}: neither an Atom feed nor a CAP alert ({root.tag})")
        current, handled = set(), 0
        for entry in root.findall(f"{{{ATOM_NS}}}entry"):
            key = (_atom(entry, "id"), _atom(entry, "updated"))
            current.add(key)
            if key not in self._fetched and await self._entry(session, url, entry):
                self._fetched.add(key)
                handled += 1
        self._fetched &= current  # forget entries that left the feed
        return handled

    async def _entry(
        self, session: aiohttp.ClientSession, feed_url: str, entry: ET.Element
    ) -> bool:
        """Ingest one Atom entry; False when it should be tried again next poll."""
        inline = entry.find(f".//{{{CAP_NS}}}alert")
        if inline is not None:
            await self.ingest(ET.tostring(inline, encoding="utf-8"), feed_url)
            return True
        href = _cap_link(entry)
        if href is None:
            log.warning("cap: %s: entry %s links to no CAP message", feed_url, _atom(entry, "id"))
            return True
        url = urljoin(feed_url, href)
        try:
            body = await _fetch(session, url)
        except (OSError, TimeoutError, CapError) as exc:
            log.warning("cap: %s: %s; trying again next poll", url, exc)
            return False
        await self.ingest(body, url)
        return True

    async def follow(self, url: str, interval: float) -> None:
        """Poll every ``interval`` seconds until cancelled; a failed poll is logged."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    await self.poll(session, url)
                except (OSError, TimeoutError, CapError, ET.ParseError) as exc:
                    log.warning("cap: polling %s failed: %s", url, exc)
                await asyncio.sleep(interval)


def _atom(entry: ET.Element, tag: str) -> str:
    return (entry.findtext(f"{{{ATOM_NS}}}{tag}") or "").strip()


def _cap_link(entry: ET.Element) -> str | None:
    links = entry.findall(f"{{{ATOM_NS}}}link")
    for link in links:
        if link.get("type") == "application/cap+xml" and link.get("href"):
            return link.get("href")
    for link in links:  # feeds that do not say the type: the alternate XML document
        href = link.get("href") or ""
        if link.get("rel", "alternate") == "alternate" and href.endswith(".xml"):
            return href
    return None


async def _fetch(session: aiohttp.ClientSession, url: str) -> bytes:
    import aiohttp

    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                raise CapError(f"{url}: HTTP {resp.status}")
            body = await resp.content.read(MAX_DOCUMENT + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CapError(f"{url}: {exc or 'timed out'}") from exc
    if len(body) > MAX_DOCUMENT:
        raise CapError(f"{url}: larger than {MAX_DOCUMENT} bytes")
    return body


# --- Command line ------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "cap", help="ingest CAP 1.2 alerts of upstream agencies (files or an Atom feed) as reports"
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="CAP XML files")
    p.add_argument("--url", help="a CAP Atom feed (or one CAP alert) to poll")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between polls (60)")
    p.add_argument("--once", action="store_true", help="poll the URL once and exit")
    p.add_argument(
        "--state",
        type=Path,
        default=None,
        help="ids already sent (default: <feeds state dir>/cap-seen.json)",
    )
    p.set_defaults(func=cmd_cap)


def cmd_cap(args: argparse.Namespace) -> int:
    import sys

    from alerting.directory import Directory
    from canhbao.settings import get_settings
    from feeds.runner import brokers

    if bool(args.files) == bool(args.url):
        print("canhbao feed cap: give either CAP files or --url", file=sys.stderr)
        return 2
    if args.interval <= 0:
        print("canhbao feed cap: --interval must be positive", file=sys.stderr)
        return 2
    settings = get_settings()
    areas = Areas.of(Directory.load(settings.geography_path, settings.directory_path))
    state: Path | None = args.state or settings.feeds_state_dir / "cap-seen.json"
    if not settings.kafka_bootstrap and args.state is None:
        state = None  # the embedded broker forgets what it got: so must we
    with brokers(settings) as bootstrap:
        try:
            return asyncio.run(_main(args, areas, state, settings.exercise, bootstrap))
        except CapError as exc:
            print(exc, file=sys.stderr)
            return 2


async def _main(
    args: argparse.Namespace, areas: Areas, state: Path | None, exercise: bool, bootstrap: str
) -> int:
    import sys

    import aiohttp

    from canhbao import metrics
    from canhbao.settings import get_settings
    from feeds.runner import until_signalled
    from feeds.sink import KafkaSink

    async with KafkaSink(bootstrap) as sink:
        ingest = CapIngest(sink, areas, state=state, accept_exercise=exercise)
        if args.files:
            for path in args.files:
                outcome, detail = await ingest.ingest_file(path)
                print(f"{path}: {outcome.value}: {detail}", file=sys.stderr)
            return 1 if ingest.stats.counts[Outcome.REJECTED] else 0
        if args.once:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                await ingest.poll(session, args.url)
            print(
                ", ".join(f"{n} {o.value}" for o, n in ingest.stats.counts.items()), file=sys.stderr
            )
            return 0
        metrics.serve(get_settings().metrics_port)
        await until_signalled(ingest.follow(args.url, args.interval))
    return 0
