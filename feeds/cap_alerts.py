"""CAP alerts from upstream agencies as reports: the pure part of ``canhbao feed cap``
(parsing, mapping by ``config/cap_ingest.yaml``, timeliness, the rules check). The I/O -
files, polling, the broker - is in ``feeds/cap_ingest.py``, whose docstring says what
becomes of an alert.

Documents: CAP 1.2 and 1.1 alerts (default namespace or a ``cap:`` prefix), alone or
wrapped in an EDXL-DE 1.0 or 2.0 distribution (every alert in its
``embeddedXMLContent``), and Atom or RSS 2.0 indexes whose entries link to CAP
documents or carry them inline.

XML safety: documents are parsed with the standard library after a first pass that
refuses any DTD (``<!DOCTYPE``). Entity declarations can only live in a DTD, so this
rules out entity-expansion bombs and external entities (XXE) outright, which is what
defusedxml's ``forbid_dtd`` does; defusedxml itself is not a dependency of the project.
CAP never needs a DTD.
"""

from __future__ import annotations

import functools
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from xml.parsers import expat

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alerting.cap_signature import SenderTrust, SigningError, Trust, certificates_of
from pipeline.validate import Timeliness, TimePolicy, check_time, span
from topics.errors import field_errors, load_yaml_model
from topics.models import Domain, Report, Severity

if TYPE_CHECKING:
    from alerting.directory import Directory
    from pipeline.rules.loader import RuleSet

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP11_NS = "urn:oasis:names:tc:emergency:cap:1.1"
CAP_VERSIONS = {CAP_NS: "1.2", CAP11_NS: "1.1"}  # same elements for everything read here
CAP10_NS = "http://www.incident.com/cap/1.0"
ATOM_NS = "http://www.w3.org/2005/Atom"
# EDXL-DE 1.0 and 2.0; element names differ in case between versions and producers.
EDXL_DE_NAMESPACES = frozenset(
    {"urn:oasis:names:tc:emergency:edxl:de:1.0", "urn:oasis:names:tc:emergency:edxl:de:2.0"}
)
CAP_MIME = "application/cap+xml"
MAX_DOCUMENT = 1024 * 1024

CapCategory = Literal[
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
    "CBRNE", "Other",
]  # fmt: skip
Ignore = Literal["ignore"]


# --- Configuration (config/cap_ingest.yaml) ----------------------------------------------


class ConfigError(ValueError):
    """The config file is missing or wrong; the message names the file and the field."""


class EventMapping(BaseModel):
    """One ``events:`` entry: alerts whose event name matches get this report category."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(min_length=1)
    domain: Domain | None = None
    categories: list[CapCategory] | None = Field(default=None, min_length=1)
    category: str | None = Field(default=None, min_length=1, max_length=64)
    ignore: str | None = Field(default=None, min_length=1)

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _complete(self) -> EventMapping:
        if (self.category is None) == (self.ignore is None):
            raise ValueError("give either category (the report category) or ignore (why)")
        if self.category is not None and self.domain is None:
            raise ValueError("a category needs its domain")
        return self

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compiled(self.match)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


class SenderKeys(BaseModel):
    """One ``senders:`` entry: the certificates a CAP sender signs its alerts with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # PEM files, relative to the config file; several during a key rollover.
    certificates: list[Path] = Field(min_length=1)
    # False while the sender starts signing: unsigned alerts pass, signed ones are checked.
    required: bool = True


class CapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_document: int = Field(default=MAX_DOCUMENT, ge=1024)
    senders: dict[str, SenderKeys] = Field(default_factory=dict)
    categories: dict[CapCategory, Domain | Ignore] = Field(default_factory=dict)
    events: list[EventMapping] = Field(default_factory=list)
    otherwise: Domain | Ignore | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_live_section(cls, data: Any) -> Any:
        # Said plainly, not "extra inputs are not permitted": a config written for an
        # earlier release had its own bounds, which would now be silently different.
        if isinstance(data, dict) and "live" in data:
            raise ValueError(
                "live: no longer read: CAP ingest judges time by the pipeline's bounds, as "
                "every adapter does (CANHBAO_MAX_LATENESS, CANHBAO_MAX_CLOCK_SKEW); remove "
                "the section"
            )
        return data


def load_config(path: Path) -> CapConfig:
    """The config file, its certificate paths made relative to it, and those
    certificates checked readable (a wrong one stops the feed at start, named)."""
    config = load_yaml_model(path, CapConfig, ConfigError)
    if config.senders:
        senders = {
            sender: keys.model_copy(
                update={"certificates": [path.parent / c for c in keys.certificates]}
            )
            for sender, keys in config.senders.items()
        }
        config = config.model_copy(update={"senders": senders})
        load_trust(config, where=f"{path}: ")
    return config


def load_trust(config: CapConfig, where: str = "") -> Trust:
    """The certificates of every sender the config lists; ``ConfigError`` naming the
    field of a missing or wrong one."""
    senders = {}
    for sender, keys in config.senders.items():
        try:
            certs = certificates_of(keys.certificates)
        except SigningError as exc:
            raise ConfigError(f"{where}senders.{sender}.certificates: {exc}") from None
        senders[sender] = SenderTrust(certs, keys.required)
    return Trust(senders)


# --- Errors ------------------------------------------------------------------------------


class CapError(ValueError):
    """Why a document cannot become a report (goes to the dead-letter topic).
    ``reason`` is the label it is counted under."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class Skip(Exception):
    """A valid alert that deliberately becomes no report (cancel, test, expired...)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


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
        raise CapError("refused: the document declares a DTD (CAP needs none)", "dtd") from None
    except expat.ExpatError as exc:
        raise CapError(f"not well-formed XML: {exc}", "not_xml") from None
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:  # the probe accepted it: not expected, but never fatal
        raise CapError(f"not well-formed XML: {exc}", "not_xml") from None


# --- Documents: a CAP alert, an EDXL-DE distribution, a feed index --------------------------


def _split(tag: str) -> tuple[str, str]:
    """(namespace, local name) of an ElementTree tag."""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def is_alert(el: ET.Element) -> bool:
    ns, local = _split(el.tag)
    return local == "alert" and ns in CAP_VERSIONS


def is_edxl(el: ET.Element) -> bool:
    ns, local = _split(el.tag)
    return local.lower() == "edxldistribution" and ns.lower() in EDXL_DE_NAMESPACES


def alerts_in(root: ET.Element) -> list[ET.Element]:
    """The CAP alerts a document carries: itself, those an EDXL-DE wraps, or those of
    an ``<alerts>`` list."""
    if is_alert(root):
        return [root]
    ns, local = _split(root.tag)
    if local == "alerts" and ns in CAP_VERSIONS:
        # Not CAP's, but a national service's list: Sweden's SMHI serves its current
        # alerts as CAP <alert> elements in one <alerts> of the CAP namespace.
        found = [child for child in root if is_alert(child)]
        if not found:
            raise CapError("an <alerts> list that holds no CAP alert", "not_cap")
        return found
    if is_edxl(root):
        found = [
            child
            for holder in root.iter()
            if _split(holder.tag)[1].lower() == "embeddedxmlcontent"
            for child in holder
            if is_alert(child)
        ]
        if not found:
            raise CapError("an EDXL-DE distribution that carries no CAP alert", "not_cap")
        return found
    if ns == CAP10_NS:
        raise CapError("CAP 1.0 is not supported (CAP 1.2 and 1.1 are)", "not_cap")
    if local == "alert":
        raise CapError(
            f"not a CAP 1.2 or 1.1 alert: the namespace is {ns or 'missing'!r}", "not_cap"
        )
    raise CapError(f"neither a CAP alert nor an EDXL-DE distribution: {root.tag}", "not_cap")


# --- CAP -> Report -----------------------------------------------------------------------


@dataclass(frozen=True)
class CapInfo:
    language: str
    categories: list[str]
    event: str
    severity: str
    headline: str
    description: str
    effective: str | None
    onset: str | None
    expires: str | None
    geocodes: list[tuple[str, str]]


@dataclass(frozen=True)
class CapAlert:
    version: str
    identifier: str
    sender: str
    sent: str
    status: str
    msg_type: str
    references: str
    infos: list[CapInfo]


def _text(el: ET.Element, ns: str, tag: str) -> str:
    return (el.findtext(f"{{{ns}}}{tag}") or "").strip()


def _info(el: ET.Element, ns: str) -> CapInfo:
    q = f"{{{ns}}}"
    geocodes = [
        (_text(g, ns, "valueName"), _text(g, ns, "value"))
        for area in el.iter(f"{q}area")
        for g in area.iter(f"{q}geocode")
    ]
    return CapInfo(
        language=_text(el, ns, "language") or "en-US",  # CAP's default language
        categories=[(c.text or "").strip() for c in el.iter(f"{q}category")],
        event=_text(el, ns, "event"),
        severity=_text(el, ns, "severity"),
        headline=_text(el, ns, "headline"),
        description=_text(el, ns, "description"),
        effective=_text(el, ns, "effective") or None,
        onset=_text(el, ns, "onset") or None,
        expires=_text(el, ns, "expires") or None,
        geocodes=geocodes,
    )


def parse_alert(root: ET.Element) -> CapAlert:
    ns, local = _split(root.tag)
    if local != "alert" or ns not in CAP_VERSIONS:
        raise CapError(f"not a CAP 1.2 or 1.1 alert: the root element is {root.tag}", "not_cap")
    alert = CapAlert(
        version=CAP_VERSIONS[ns],
        identifier=_text(root, ns, "identifier"),
        sender=_text(root, ns, "sender"),
        sent=_text(root, ns, "sent"),
        status=_text(root, ns, "status"),
        msg_type=_text(root, ns, "msgType"),
        references=_text(root, ns, "references"),
        infos=[_info(el, ns) for el in root.findall(f"{{{ns}}}info")],
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

    def knows(self, codes: Iterable[str]) -> bool:
        """Whether any of these bare geocode values is one of our communes."""
        return any(c in self.by_geocode or c in self.codes for c in codes)

    def match(self, geocodes: Iterable[tuple[str, str]]) -> list[str]:
        found = []
        for name, value in geocodes:
            if name == "canhbao:commune" and value in self.codes:
                found.append(value)
            elif value in self.by_geocode:
                found.append(self.by_geocode[value])
        return list(dict.fromkeys(found))


def _rank(severity: Severity) -> int:
    return severity.rank


@dataclass(frozen=True)
class ReportRules:
    """What the report rules in force take: per (domain, category), the lowest
    ``min_severity`` of the rules that listen to it (pipeline/engine.py, on_report)."""

    version: str
    takes: dict[tuple[Domain, str], Severity]

    @classmethod
    def of(cls, rules: RuleSet) -> ReportRules:
        from pipeline.rules.model import ReportCondition

        takes: dict[tuple[Domain, str], Severity] = {}
        for rule in rules.of_kind("report"):
            cond = rule.condition
            assert isinstance(cond, ReportCondition)
            for category in cond.categories:
                key = (rule.domain, category)
                if key not in takes or _rank(cond.min_severity) < _rank(takes[key]):
                    takes[key] = cond.min_severity
        return cls(rules.version, takes)

    def check(self, domain: Domain, category: str, severity: Severity) -> None:
        """Raises when the report would raise nothing: ``CapError`` (no rule takes the
        category: dead-lettered, to replay once a rule does) or ``Skip`` (below every
        such rule's minimum severity, a choice the rule made)."""
        minimum = self.takes.get((domain, category))
        if minimum is None:
            known = sorted(c for d, c in self.takes if d is domain)
            raise CapError(
                f"no rule takes {domain.value} reports of category {category!r} (rule set "
                f"{self.version} takes {known or 'none'}): add a report rule for it, or "
                "map or ignore the event in config/cap_ingest.yaml",
                "no_rule",
            )
        if _rank(severity) < _rank(minimum):
            raise Skip(
                f"severity {severity.value} is below {minimum.value}, the least the rules "
                f"take for {domain.value} reports of category {category!r}",
                "below_min_severity",
            )


def _check_kind(alert: CapAlert, accept_exercise: bool) -> None:
    if alert.status == "Exercise" and not accept_exercise:
        raise Skip(
            "an exercise, and this deployment is not running one (CANHBAO_EXERCISE)", "exercise"
        )
    if alert.status not in ("Actual", "Exercise"):
        raise Skip(f"status {alert.status}: not a real alert", "status")
    if alert.msg_type == "Cancel":
        raise Skip(
            f"a Cancel of {alert.references or 'an earlier alert'}: nothing to send", "cancel"
        )
    if alert.msg_type not in ("Alert", "Update"):
        raise Skip(f"msgType {alert.msg_type}: not an alert", "msg_type")


def timeliness(alert: CapAlert, now: datetime, policy: TimePolicy) -> datetime:
    """The report's ``observed_at`` if the alert is live at ``now``; else raises ``Skip``
    (expired; or history: not notified) or ``CapError`` (a time ahead of the clock or
    implausible: a wrong clock, dead-lettered).

    Time is judged by the pipeline's one policy (``pipeline.validate.check_time``, the
    bounds of CANHBAO_MAX_CLOCK_SKEW, CANHBAO_MAX_LATENESS, CANHBAO_EARLIEST_OBSERVED_AT),
    on the time the report will carry, so the validate stage judges it as we do. That
    time is the latest of the alert's ``sent``, ``effective`` and ``onset``: an alert
    sent hours ago that takes effect (or whose event begins) now is live, dated then;
    one whose effect or event is still ahead is pending, not history, and is dated now.
    Only ``sent`` must not lie ahead of the clock: it is when the sender wrote it.
    Whether the alert still holds is CAP's own: ``expires``."""
    sent = cap_datetime(alert.sent, "sent")
    wrong = check_time(sent, now, policy, field_name="sent")
    if wrong is not None and wrong.kind is not Timeliness.HISTORICAL:
        raise CapError(f"refused: {wrong.reason}", wrong.kind.value)
    expiries = [i.expires for i in alert.infos]
    if expiries and all(expiries):  # an <info> without <expires> does not expire
        last = max(expiries, key=lambda e: cap_datetime(e or "", "expires"))
        if cap_datetime(last or "", "expires") <= now:
            raise Skip(f"refused: expired at {last}", "expired")
    times = [(sent, "sent", alert.sent)] + [
        (cap_datetime(value, name), name, value)
        for i in alert.infos
        for name, value in (("effective", i.effective), ("onset", i.onset))
        if value
    ]
    latest, name, said = max(times, key=lambda t: t[0])
    at = max(sent, min(latest, now))
    untimely = check_time(at, now, policy, field_name=name)
    if untimely is None:
        return at
    if untimely.kind is Timeliness.HISTORICAL:
        raise Skip(
            f"{name} {said}, {span(now - at)} ago: beyond the live lateness bound of "
            f"{span(policy.max_lateness)} it is history, not notified (an alert's time is "
            "the latest of its sent, effective and onset)",
            untimely.kind.value,
        )
    raise CapError(f"refused: {untimely.reason}", untimely.kind.value)


def classify(alert: CapAlert, config: CapConfig) -> tuple[Domain, str]:
    """(domain, report category) by ``config``; raises ``Skip`` for an ignored alert and
    ``CapError`` when nothing places it."""
    cats = list(dict.fromkeys(c for i in alert.infos for c in i.categories))
    table: dict[str, Domain | Ignore] = {str(k): v for k, v in config.categories.items()}
    mapped = [table[c] for c in cats if c in table]
    domains = [m for m in mapped if isinstance(m, Domain)]
    by_category = domains[0] if domains else None
    events = [i.event for i in alert.infos if i.event]
    for entry in config.events:
        if entry.categories is not None:
            if not set(entry.categories) & set(cats):
                continue
        elif entry.domain is not None and by_category not in (None, entry.domain):
            continue
        matched = next((e for e in events if entry.pattern.search(e)), None)
        if matched is None:
            continue
        if entry.ignore is not None:
            raise Skip(f"ignored: event {matched!r}: {entry.ignore}", "ignored")
        assert entry.domain is not None and entry.category is not None
        return entry.domain, entry.category
    domain: Domain | Ignore | None = by_category
    if domain is None:
        domain = "ignore" if mapped else config.otherwise
    if domain is None:
        raise CapError(
            f"no canhbao domain for the CAP categories {cats or 'none'} and the event "
            f"{events[0] if events else 'none'!r}: map them in config/cap_ingest.yaml",
            "no_domain",
        )
    if domain == "ignore":
        raise Skip(f"ignored: the CAP categories {cats or 'none'}", "ignored")
    return domain, _event_category(domain, alert.infos)


def _event_category(domain: Domain, infos: list[CapInfo]) -> str:
    english = next((i for i in infos if i.language.lower().startswith("en") and i.event), None)
    event = (english or next((i for i in infos if i.event), infos[0])).event
    return re.sub(r"\s+", "_", (event or domain.value).strip().lower())[:64]


def _preferred(infos: list[CapInfo]) -> CapInfo:
    """The text people here read: Vietnamese, else English, else the first."""
    for prefix in ("vi", "en"):
        for info in infos:
            if info.language.lower().startswith(prefix):
                return info
    return infos[0]


def _severity(value: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        raise CapError(f"severity {value!r} is not a CAP severity") from None


def to_report(
    alert: CapAlert,
    areas: Areas,
    config: CapConfig,
    *,
    now: datetime,
    accept_exercise: bool,
    rules: ReportRules | None = None,
    policy: TimePolicy | None = None,
) -> Report:
    """The report an alert becomes; raises ``Skip`` or ``CapError``. Without ``rules``
    the report is not checked against the rules in force; without ``policy``, time is
    judged by the default bounds."""
    _check_kind(alert, accept_exercise)
    if not alert.infos:
        raise CapError("the alert has no <info>")
    observed_at = timeliness(alert, now, policy or TimePolicy())
    domain, category = classify(alert, config)
    codes = areas.match(g for i in alert.infos for g in i.geocodes)
    if not codes:
        known = sorted({v for i in alert.infos for _, v in i.geocodes})
        raise CapError(
            f"no geocode matches a commune of ours (the alert has {known or 'none'})", "no_area"
        )
    # Several <info> may carry different severities for different areas: ours decide.
    ours = [i for i in alert.infos if areas.match(i.geocodes)] or alert.infos
    severity = max((_severity(i.severity) for i in ours), key=_rank)
    if rules is not None:
        rules.check(domain, category, severity)
    info = _preferred(alert.infos)
    text = "\n".join(t for t in (info.headline or info.event, info.description) if t)
    try:
        return Report(
            report_id=report_id(alert.sender, alert.identifier),
            domain=domain,
            category=category,
            severity=severity,
            areas=codes,
            observed_at=observed_at,  # see timeliness()
            reporter=alert.sender[:128],
            text=text[:4000],
        )
    except ValidationError as exc:
        problems = "; ".join(field_errors(exc, "(report)"))
        raise CapError(f"invalid report: {problems}") from None


# --- Feed indexes (Atom, RSS) ---------------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    """One entry of an Atom or RSS index: its key (id, updated), and either the alerts
    it carries inline or the URL of its CAP document; and the geocodes the index gives
    for it (CAP elements in the entry, as national indexes do), to fetch only ours."""

    key: tuple[str, str]
    inline: list[ET.Element]
    link: str | None
    geocodes: list[str] = field(default_factory=list)


def index_items(root: ET.Element) -> list[FeedItem] | None:
    """The entries of an Atom feed or an RSS 2.0 channel; None for other documents."""
    if root.tag == f"{{{ATOM_NS}}}feed":
        return [_atom_item(e) for e in root.findall(f"{{{ATOM_NS}}}entry")]
    if root.tag == "rss":
        return [_rss_item(i) for i in root.findall("channel/item")]
    return None


def _inline(el: ET.Element) -> list[ET.Element]:
    """CAP alerts an index entry carries itself (also inside an EDXL-DE)."""
    return [sub for sub in el.iter() if sub is not el and is_alert(sub)]


def _index_geocodes(el: ET.Element) -> list[str]:
    """Geocode values an index entry lists outside any alert (``<cap:geocode>``; one
    element may hold several valueName/value pairs, a value several codes)."""
    inside = {id(sub) for alert in _inline(el) for sub in alert.iter()}
    return [
        code
        for geo in el.iter()
        if id(geo) not in inside and _split(geo.tag) in {(ns, "geocode") for ns in CAP_VERSIONS}
        for value in geo.iter()
        if _split(value.tag)[1] == "value"
        for code in (value.text or "").split()
    ]


def _atom_item(entry: ET.Element) -> FeedItem:
    def text(tag: str) -> str:
        return (entry.findtext(f"{{{ATOM_NS}}}{tag}") or "").strip()

    key = (text("id"), text("updated"))
    link = _cap_link(entry.findall(f"{{{ATOM_NS}}}link"))
    return FeedItem(key, _inline(entry), link, _index_geocodes(entry))


def _rss_item(item: ET.Element) -> FeedItem:
    guid = (item.findtext("guid") or "").strip()
    link = (item.findtext("link") or "").strip()
    key = (guid or link, (item.findtext("pubDate") or "").strip())
    enclosures = [
        e.get("url")
        for e in item.findall("enclosure")
        if _is_cap_type(e.get("type")) and e.get("url")
    ]
    href = (
        enclosures[0]
        if enclosures
        else _cap_link(item.findall(f"{{{ATOM_NS}}}link")) or link or None
    )
    if href is None and guid.startswith(("http://", "https://")):
        guid_el = item.find("guid")
        if guid_el is not None and guid_el.get("isPermaLink", "true") != "false":
            href = guid
    return FeedItem(key, _inline(item), href, _index_geocodes(item))


def _is_cap_type(media_type: str | None) -> bool:
    return (media_type or "").split(";")[0].strip().lower() == CAP_MIME


def _cap_link(links: list[ET.Element]) -> str | None:
    """The CAP document an index entry links to: the link typed application/cap+xml,
    else the alternate link (Atom's default rel) if its type is XML or unsaid, as in
    national indexes that link each entry to a script (``...get.php?x=...``). Any XML
    type will do: Sweden's national feed (Krisinformation) types its links to CAP
    messages ``application/atom+xml``; what is fetched is read as CAP or refused."""
    for link in links:
        if _is_cap_type(link.get("type")) and link.get("href"):
            return link.get("href")
    untyped = None
    for link in links:
        href, media = link.get("href"), (link.get("type") or "").split(";")[0].strip().lower()
        if not href or link.get("rel", "alternate") != "alternate":
            continue
        if media in ("application/xml", "text/xml") or (
            media.endswith("+xml") and media != "application/xhtml+xml"  # a web page
        ):
            return href
        if not media and untyped is None:
            untyped = href
    return untyped
