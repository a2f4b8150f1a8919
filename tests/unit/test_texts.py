"""Every text a citizen or an agency can receive, for every shipped rule, read for what
a person would notice (issue 15, items 2 and 9): "108,00 m" for a silence, "(151,00 )
18,00 ." for an index without unit, "3,00" alerts that were a report's severity code.

The warnings come from the engine itself: every case of the shipped rule tests
(``rules/*.test.yaml``), every drill scenario, and, for a rule that neither raises, a
rise through its levels and back. That covers every shipped rule, the quality gate's
sensor-fault notices and the staleness (data-gap) notices. Each one, live and as an
exercise, is rendered for every channel, audience and language (vi, en, km), and as
digests and reminders; the CAP XML too. Every text must:

- have no empty brackets, no space before punctuation, no doubled space;
- write each quantity with its unit, or none: water levels in m, rain in mm, a silence
  in minutes or hours, counts with what they count, an index (VN_AQI) bare;
- write whole quantities as whole numbers (no "151,00", no "3,00" alerts);
- write a report as what it is (its category and severity), never its severity code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import pipeline.ruletest as ruletest
from alerting.cap import cap_xml
from alerting.directory import Directory
from alerting.render import LANGS, Rendered, render, render_digest
from alerting.templates import TEMPLATE_DIR
from feeds.scenarios import SCENARIOS
from pipeline.engine import Engine
from pipeline.replay import Replay
from pipeline.rules.loader import RuleSet
from pipeline.rules.model import ThresholdCondition
from tests.unit.conftest import REPO
from topics.models import (
    Audience,
    Channel,
    Domain,
    Evidence,
    Reading,
    Severity,
    Transition,
    Warning,
)

ICT = timezone(timedelta(hours=7))
START = datetime(2026, 9, 14, 6, 0, tzinfo=ICT)
QUALITY_NOTICES = {"quality.out_of_range", "quality.spike", "quality.stuck"}

# --- What a reader expects, written down here, independently of the renderer ----------

# The unit written after a value of each shipped metric (None: a bare number).
UNIT: dict[str, dict[str, str] | None] = {
    "water_level_m": {"vi": "m", "en": "m", "km": "m"},
    "rain_mm": {"vi": "mm", "en": "mm", "km": "mm"},
    "pm25_ugm3": {"vi": "µg/m³", "en": "µg/m³", "km": "µg/m³"},
    "soil_moisture_pct": {"vi": "%", "en": "%", "km": "%"},
    "grid_frequency_hz": {"vi": "Hz", "en": "Hz", "km": "Hz"},
    "fuel_reserve_days": {"vi": "ngày", "en": "days", "km": "ថ្ងៃ"},
    "vn_aqi": None,
    "failed_login:count": {"vi": "lần", "en": "attempts", "km": "ដង"},
    "ids_alert_high:count": {"vi": "cảnh báo", "en": "alerts", "km": "ការជូនដំណឹង"},
    "http_requests:rate": {"vi": "yêu cầu/giây", "en": "requests/s", "km": "សំណើ/វិនាទី"},
    "water_level_m:rate_per_h": {"vi": "m/giờ", "en": "m/h", "km": "m/ម៉ោង"},
    "rain_mm:sum": {"vi": "mm", "en": "mm", "km": "mm"},
    "pm25_ugm3:mean": {"vi": "µg/m³", "en": "µg/m³", "km": "µg/m³"},
    "dengue_cases_weekly:z": None,
    "ili_visits_daily:ears": None,
}
WHOLE = {"vn_aqi", "failed_login:count", "ids_alert_high:count"}  # never with decimals
# Minutes of silence, written: "45 phút", "1 giờ 48 phút", "30 min", "2 h 5 min".
SILENCE = {
    "vi": r"\d+ (phút|giờ)( \d+ phút)?",
    "en": r"\d+ (min|h)( \d+ min)?",
    "km": r"\d+ (នាទី|ម៉ោង)( \d+ នាទី)?",
}
SEVERITY_WORDS = {
    "vi": {"Extreme": "cực kỳ nghiêm trọng", "Severe": "nghiêm trọng", "Moderate": "trung bình",
           "Minor": "nhẹ", "Unknown": "chưa rõ"},
    "en": {"Extreme": "extreme", "Severe": "severe", "Moderate": "moderate", "Minor": "minor",
           "Unknown": "unknown"},
    "km": {"Extreme": "ធ្ងន់ធ្ងរបំផុត", "Severe": "ធ្ងន់ធ្ងរ", "Moderate": "មធ្យម", "Minor": "ស្រាល",
           "Unknown": "មិនទាន់ដឹង"},
}  # fmt: skip
# Units that keep two decimals, as the river bulletins write ("5,00 m", "50,00 Hz").
FIXED_UNITS = ("m", "m/giờ", "m/h", "m/ម៉ោង", "Hz")

EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")
SPACE_BEFORE = re.compile(r"\s[,.;:!?)\]។៖]")
DOUBLE_SPACE = re.compile(r"\S {2,}\S")
TWO_ZEROS = re.compile(r"(?<![\d.,])(\d{1,3}(?:[.,]\d{3})*)[.,]00(?!\d)(\s*(\S+))?")


def _family(ev: Evidence) -> str:
    base, _, derived = ev.metric.partition(":")
    if not derived:
        return base
    for prefix in ("count", "rate_per_h", "rate", "sum", "mean", "ears"):
        if derived.startswith(prefix):
            return f"{base}:{prefix}"
    return f"{base}:{derived}"


def _kind(ev: Evidence) -> str:
    if ev.metric.startswith("report:"):
        return "report"
    if ev.note.startswith("component "):
        return "component"
    if ev.note.startswith("silent since"):
        return "silence"
    return "measured"


def _numbers(value: float) -> str:
    """A regex for ``value`` as a person could write it (0 to 2 decimals, either mark,
    thousands grouped)."""
    options = set()
    for d in (0, 1, 2):
        text = f"{value:,.{d}f}"
        options |= {text, text.replace(",", "\0").replace(".", ",").replace("\0", ".")}
    return "(" + "|".join(re.escape(o) for o in sorted(options, key=len, reverse=True)) + ")"


# --- The warnings: what the engine raises with the shipped rules -----------------------


class Recording(Replay):
    seen: list[Replay] = []  # noqa: RUF012 - filled while the rule tests run

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        Recording.seen.append(self)


def _through_the_levels(rule_id: str, rules: RuleSet, directory: Directory) -> list[Warning]:
    """A station rule's readings rising through each level and back, three hours apart
    (slower than any spike limit, longer than any ``sustained``)."""
    rule = next(r for r in rules.rules if r.id == rule_id)
    cond = rule.condition
    assert isinstance(cond, ThresholdCondition) and rule.selector.station, (
        f"{rule_id} raises nothing in the rule tests or scenarios: add a case to its rule test"
    )
    sign = 1 if cond.direction == "rising" else -1
    step = max(cond.hysteresis, 0.01) * 2
    values = [rule.levels[0].value - sign * 2 * step]
    for level in rule.levels:
        values += [level.value + sign * step] * 2
    values += [rule.levels[0].value - sign * 2 * step] * 2
    replay = Replay(Engine(rules, directory))
    for i, value in enumerate(values):
        replay.reading(
            Reading(station_id=rule.selector.station, domain=Domain(rule.domain),
                    metric=rule.selector.metric, value=value,
                    observed_at=START + timedelta(hours=3 * i), source="test")
        )  # fmt: skip
    return replay.warnings


@pytest.fixture(scope="module")
def warnings(ruleset: RuleSet, directory: Directory) -> list[Warning]:
    found: list[Warning] = []
    original = ruletest.Replay
    ruletest.Replay = Recording  # type: ignore[misc]
    try:
        for path in ruletest.find_test_files([REPO / "rules"]):
            ruletest.run_file(path, directory)
    finally:
        ruletest.Replay = original  # type: ignore[misc]
    found += [w for r in Recording.seen for w in r.warnings]
    for scenario in SCENARIOS.values():
        replay = Replay(Engine(ruleset, directory))
        for m in scenario.events(START):
            replay.reading(m) if isinstance(m, Reading) else replay.report(m)
        replay.finish(START + scenario.duration)
        found += replay.warnings
    for rule in ruleset.rules:
        if not any(w.rule_id == rule.id for w in found):
            found += _through_the_levels(rule.id, ruleset, directory)
    # One of each (rule, transition, evidence kinds): the texts differ by these.
    unique: dict[tuple[str, ...], Warning] = {}
    for w in found:
        key = (w.rule_id, w.transition.value, *(_kind(e) for e in w.evidence))
        unique.setdefault(key, w)
    return list(unique.values())


def test_every_shipped_rule_and_notice_is_rendered(
    warnings: list[Warning], ruleset: RuleSet
) -> None:
    seen = {w.rule_id for w in warnings}
    assert {r.id for r in ruleset.rules} <= seen
    assert seen >= QUALITY_NOTICES
    gap = [w for w in warnings if w.hazard == "data_gap"]
    assert {w.transition for w in gap} >= {Transition.RAISED, Transition.CLEARED}
    assert any(_kind(e) == "report" for w in warnings for e in w.evidence)
    assert any(_kind(e) == "component" for w in warnings for e in w.evidence)


# --- Rendering everything ---------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    where: str  # "sms/agency/vi water.flood.dap-cau raised"
    lang: str
    text: str
    shows_value: bool  # the form that states the evidence's value (not the citizens' SMS)
    spoken: bool = False


def _texts_of(r: Rendered, where: str) -> Iterator[Text]:
    shows = not (r.channel is Channel.SMS and r.audience is Audience.CITIZEN)
    shows = shows and r.channel is not Channel.CAP  # CAP: headline, summary, instruction
    spoken = r.channel is Channel.LOUDSPEAKER
    yield Text(f"{where} subject", r.lang, r.subject, False)
    yield Text(f"{where} text", r.lang, r.text, shows, spoken)
    if r.sms_gsm7 is not None:
        yield Text(f"{where} gsm7", r.lang, r.sms_gsm7.text, False)
    if r.html is not None:
        # Each piece of text between tags, as a reader sees it.
        for piece in re.split(r"<[^>]+>", r.html):
            if piece.strip():
                yield Text(f"{where} html", r.lang, " ".join(piece.split()), False)
    if r.payload is not None:
        for code, text in r.payload.get("text", {}).items():
            yield Text(f"{where} payload.{code}", code, text, r.channel is Channel.WEBHOOK)


def _audiences(channel: Channel) -> list[Audience]:
    """Every audience with a template of its own on ``channel`` (or whose channel
    templates speak of the audience); else one: they all read the same text."""
    folder = TEMPLATE_DIR / channel.value
    own = [a for a in Audience if list(folder.glob(f"{channel.value}.{a.value}.*.j2"))]
    if own or any("audience" in f.read_text(encoding="utf-8") for f in folder.glob("*.j2")):
        return list(Audience)
    return [Audience.AGENCY]


def _renderings(w: Warning) -> Iterator[Text]:
    name = f"{w.rule_id} {w.transition.value}{' exercise' if w.exercise else ''}"
    for lang in LANGS:
        for channel in Channel:
            if channel is Channel.WEBHOOK and lang != LANGS[0]:
                continue  # one webhook payload carries the texts of every language
            for audience in _audiences(channel):
                r = render(w, channel, lang, audience)
                yield from _texts_of(r, f"{channel.value}/{audience.value}/{lang} {name}")
            if channel in (Channel.WEBHOOK, Channel.EMAIL, Channel.SMS) and w.active:
                r = render(w, channel, lang, Audience.AGENCY, reminder=True)
                yield from _texts_of(r, f"{channel.value}/reminder/{lang} {name}")


def _hygiene(t: Text) -> list[str]:
    found = []
    for pattern, what in (
        (EMPTY_BRACKETS, "empty brackets"),
        (SPACE_BEFORE, "a space before punctuation"),
        (DOUBLE_SPACE, "a doubled space"),
    ):
        for line in t.text.splitlines():
            m = pattern.search(line)
            if m:
                found.append(
                    f"{t.where}: {what} in {line[max(0, m.start() - 40) : m.end() + 20]!r}"
                )
    for m in TWO_ZEROS.finditer(t.text):
        unit = (m.group(3) or "").rstrip(".,;:)។៖")
        if unit not in FIXED_UNITS:
            found.append(f"{t.where}: a whole number written with decimals: {m.group(0)!r}")
    return found


def _evidence_shown(t: Text, w: Warning) -> list[str]:
    """The evidence the text states: with its unit or none, whole numbers whole, a
    silence in time, a report as a report."""
    if not t.shows_value or not w.evidence:
        return []
    ev, found, lang = w.evidence[0], [], t.lang
    kind, text = _kind(ev), t.text
    if kind == "report":
        rank = round(ev.value)
        if re.search(rf"(?<![\d.,]){rank}[.,]0+\b", text) or re.search(
            rf"[:,] {rank} (lúc|at|នៅ)", text
        ):
            found.append(f"{t.where}: a report's severity code {rank} shown as a number")
        severity = Severity.of_rank(rank).value
        if SEVERITY_WORDS[lang][severity] not in text.lower():
            found.append(f"{t.where}: the report's severity ({severity}) is not said")
    elif kind == "silence" and w.active and not t.spoken:
        if not re.search(SILENCE[lang], text):
            found.append(f"{t.where}: the silence is not written in minutes or hours")
        if re.search(_numbers(ev.value) + r"\s?(m|mét|metres)\b", text):
            found.append(f"{t.where}: a silence written in metres")
    elif kind == "measured" and not t.spoken:
        family = _family(ev)
        assert family in UNIT, f"a new metric {family!r}: say its unit in UNIT"
        unit = UNIT[family]
        number = _numbers(ev.value)
        if unit is None:
            if not re.search(number + r"(?![\d.,])(?!\s?(m|mm|Hz|%|ngày|days)\b)", text):
                found.append(f"{t.where}: the value {ev.value:g} is not shown bare")
        elif not re.search(number + r"\s?" + re.escape(unit[lang]), text):
            found.append(f"{t.where}: the value {ev.value:g} is not followed by {unit[lang]!r}")
        if family in WHOLE and re.search(rf"\b{round(ev.value)}[.,]\d", text):
            found.append(f"{t.where}: the whole number {round(ev.value)} written with decimals")
    return found


def test_every_text_of_every_warning_reads_right(warnings: list[Warning]) -> None:
    problems: list[str] = []
    drills = {w.rule_id: w.model_copy(update={"exercise": True}) for w in warnings}
    for w in [*warnings, *drills.values()]:  # an exercise: each rule once (marks differ)
        for t in _renderings(w):
            problems += _hygiene(t) + _evidence_shown(t, w)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(sorted(set(problems))[:60])


def test_cap_messages_read_right(warnings: list[Warning], directory: Directory) -> None:
    problems: list[str] = []
    for w in warnings:
        xml = cap_xml(w, directory)
        for field in re.findall(r"<(?:headline|description|instruction)>([^<]*)<", xml):
            t = Text(f"cap {w.rule_id} {w.transition.value}", "vi", field, False)
            problems += _hygiene(t)
    assert not problems, "\n".join(sorted(set(problems))[:60])


def test_digests_and_reminders_read_right(warnings: list[Warning]) -> None:
    """Several warnings of a group in one message, as the aggregation groups send them:
    each line of a digest (not its SMS form) states its active warning's evidence."""
    by_domain: dict[str, list[Warning]] = {}
    for w in warnings:
        by_domain.setdefault(w.domain.value, []).append(w)
    problems: list[str] = []
    for domain, members in by_domain.items():
        group = list({w.warning_id: w for w in members}.values())[:5]
        if len(group) < 2:
            continue
        active = [w for w in group if w.active]
        for channel in (Channel.WEBHOOK, Channel.EMAIL, Channel.SMS):
            for lang in LANGS:
                for audience in Audience:
                    where = f"{channel.value}/{audience.value}/{lang} {domain}"
                    r = render_digest(
                        group, channel, lang, audience,
                        changed={group[0].warning_id}, labels={"domain": domain},
                    )  # fmt: skip
                    shown = [(t, group) for t in _texts_of(r, f"digest/{where}")]
                    if len(active) >= 2:
                        r = render_digest(active, channel, lang, audience, reminder=True)
                        shown += [(t, active) for t in _texts_of(r, f"reminder/{where}")]
                    for t, listed in shown:
                        problems += _hygiene(t)
                        if channel is not Channel.SMS and t.where.endswith(" text"):
                            for w in listed:
                                if w.active:
                                    problems += _evidence_shown(t, w)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(sorted(set(problems))[:60])


# --- The defects as they were seen ------------------------------------------------------


def test_a_data_gap_says_how_long_the_station_is_silent_not_metres(
    warnings: list[Warning],
) -> None:
    gap = next(w for w in warnings if w.hazard == "data_gap" and w.active)
    long = gap.model_copy(
        update={"evidence": [gap.evidence[0].model_copy(update={"value": 108.0})]}
    )
    sms = render(long, Channel.SMS, "vi", Audience.AGENCY).text
    assert "1 giờ 48 phút" in sms and "108,00 m" not in sms
    assert "no data for 1 h 48 min" in render(long, Channel.WEBHOOK, "en").text
    speaker = render(long, Channel.LOUDSPEAKER, "en", Audience.CITIZEN).text
    assert "1 hour and 48 minutes" in speaker


def test_an_air_quality_index_is_a_whole_number_without_a_unit(
    warnings: list[Warning],
) -> None:
    aqi = next(w for w in warnings if w.rule_id == "env.aqi.yen-phong" and w.active)
    text = render(aqi, Channel.WEBHOOK, "vi").text
    value, threshold = round(aqi.evidence[0].value), round(aqi.evidence[0].threshold or 0)
    assert f": {value} lúc" in text and f"({threshold})" in text
    assert ",00" not in text and "( )" not in text and " ." not in text


def test_a_report_is_written_as_a_report_not_as_its_severity_code(
    warnings: list[Warning],
) -> None:
    report = next(w for w in warnings if w.evidence and w.evidence[0].metric == "report:defacement")
    en = render(report, Channel.WEBHOOK, "en").text
    assert "a severe report of website defacement at" in en
    assert "3.00" not in en and "3,00" not in render(report, Channel.SMS, "vi").text
