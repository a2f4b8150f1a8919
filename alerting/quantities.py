"""What the number of a warning's evidence is, and how a message writes it.

The engine records why a warning is at its level as :class:`~topics.models.Evidence`:
a station, a metric and a value. The value is not always the reading: a window rule
records its sum, count, mean or rate (``rain_mm:sum_86400s``), a rate-of-change rule
its metres per hour (``water_level_m:rate_per_h``), an outbreak rule a statistic
(``dengue_cases_weekly:z``), a staleness rule the minutes a station has been silent,
a report rule the severity of the report (``report:flooding``), a compound rule the
level of each component. Written as "108,00 m" or "3,00", these mislead: a silence is
not metres, a severity code is not a count, an air-quality index has no decimals.

:func:`describe` says what a value is (:class:`Quantity`); :func:`written` and
:func:`spoken` write it with its unit, or none, in Vietnamese, English or Khmer.
The channel templates reach these through filters (:mod:`alerting.templates`).
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from topics.models import Evidence, Severity


class Kind(StrEnum):
    MEASURE = "measure"  # a reading, or a quantity computed from readings, in a unit
    COUNT = "count"  # how many (attempts, alerts, cases): a whole number
    INDEX = "index"  # a unitless index (VN_AQI): a whole number
    SCORE = "score"  # a unitless statistic (z-score, EARS C): one decimal
    SILENCE = "silence"  # the minutes a station has sent nothing
    REPORT = "report"  # a report: the value is the rank of its severity
    COMPONENT = "component"  # a compound rule's component: the value is its level


# Kinds whose value is a number to compare with a threshold and to show as such.
MEASURED = frozenset({Kind.MEASURE, Kind.COUNT, Kind.INDEX, Kind.SCORE})


@dataclass(frozen=True)
class Quantity:
    kind: Kind
    unit: str = ""  # a key of UNITS; "" when the value has none
    decimals: int = 2  # at most
    fixed: bool = False  # keep trailing zeros ("4,30 m", as the river bulletins write)
    detail: str = ""  # REPORT: the category; COMPONENT: the component's hazard


# The metrics of the shipped rule packs and the quality gate. A metric not listed here
# is written as a plain number: up to two decimals, no unit.
METRICS: dict[str, Quantity] = {
    "water_level_m": Quantity(Kind.MEASURE, "m", 2, fixed=True),
    "rain_mm": Quantity(Kind.MEASURE, "mm", 1),
    "rain_24h_mm": Quantity(Kind.MEASURE, "mm", 1),
    "pm25_ugm3": Quantity(Kind.MEASURE, "µg/m³", 1),
    "soil_moisture_pct": Quantity(Kind.MEASURE, "%", 1),
    "grid_frequency_hz": Quantity(Kind.MEASURE, "Hz", 2, fixed=True),
    "fuel_reserve_days": Quantity(Kind.MEASURE, "days", 1),
    "vn_aqi": Quantity(Kind.INDEX, "", 0),
    "dengue_cases_weekly": Quantity(Kind.COUNT, "cases", 0),
    "ili_visits_daily": Quantity(Kind.COUNT, "visits", 0),
    "failed_login": Quantity(Kind.COUNT, "attempts", 0),
    "ids_alert_high": Quantity(Kind.COUNT, "alerts", 0),
    "http_requests": Quantity(Kind.COUNT, "requests", 0),
}
PLAIN = Quantity(Kind.MEASURE, "", 2)

# Units as written, and as said aloud (a loudspeaker script has no abbreviations).
# "%" sticks to its number; every other unit follows a space.
UNITS: dict[str, dict[str, str]] = {
    "m": {"vi": "m", "en": "m", "km": "m"},
    "mm": {"vi": "mm", "en": "mm", "km": "mm"},
    "µg/m³": {"vi": "µg/m³", "en": "µg/m³", "km": "µg/m³"},
    "%": {"vi": "%", "en": "%", "km": "%"},
    "Hz": {"vi": "Hz", "en": "Hz", "km": "Hz"},
    "m/h": {"vi": "m/giờ", "en": "m/h", "km": "m/ម៉ោង"},
    "days": {"vi": "ngày", "en": "days", "km": "ថ្ងៃ"},
    "cases": {"vi": "ca", "en": "cases", "km": "ករណី"},
    "visits": {"vi": "lượt khám", "en": "visits", "km": "ការពិនិត្យ"},
    "attempts": {"vi": "lần", "en": "attempts", "km": "ដង"},
    "alerts": {"vi": "cảnh báo", "en": "alerts", "km": "ការជូនដំណឹង"},
    "requests": {"vi": "yêu cầu", "en": "requests", "km": "សំណើ"},
    "requests/s": {"vi": "yêu cầu/giây", "en": "requests/s", "km": "សំណើ/វិនាទី"},
}
SINGULAR_EN = {"days": "day", "cases": "case", "visits": "visit", "attempts": "attempt",
               "alerts": "alert", "requests": "request"}  # fmt: skip
SPOKEN_UNITS: dict[str, dict[str, str]] = {
    "vi": {
        "m": "mét", "mm": "mi-li-mét", "µg/m³": "micrôgam trên mét khối", "%": "phần trăm",
        "Hz": "héc", "m/h": "mét mỗi giờ", "requests/s": "yêu cầu mỗi giây",
    },
    "en": {
        "m": "metres", "mm": "millimetres", "µg/m³": "micrograms per cubic metre",
        "%": "per cent", "Hz": "hertz", "m/h": "metres per hour",
        "requests/s": "requests per second",
    },
    "km": {
        "m": "ម៉ែត្រ", "mm": "មីលីម៉ែត្រ", "µg/m³": "មីក្រូក្រាមក្នុងមួយម៉ែត្រគូប", "%": "ភាគរយ",
        "Hz": "ហឺត", "m/h": "ម៉ែត្រក្នុងមួយម៉ោង", "requests/s": "សំណើក្នុងមួយវិនាទី",
    },
}  # fmt: skip

# How long, written: minutes, or hours and minutes.
_DURATION = {
    "vi": ("{m} phút", "{h} giờ", "{h} giờ {m} phút"),
    "en": ("{m} min", "{h} h", "{h} h {m} min"),
    "km": ("{m} នាទី", "{h} ម៉ោង", "{h} ម៉ោង {m} នាទី"),
}
_DURATION_SPOKEN = {
    "vi": ("{m} phút", "{h} giờ", "{h} giờ {m} phút"),
    "en": ("{m} minutes", "{h} hours", "{h} hours and {m} minutes"),
    "km": ("{m} នាទី", "{h} ម៉ោង", "{h} ម៉ោង {m} នាទី"),
}


_WINDOW = re.compile(r"^(count|sum|mean|max|min|rate)_\d+s$")


def describe(ev: Evidence) -> Quantity:
    """What ``ev.value`` is, from how the engine writes each kind of evidence."""
    if ev.metric.startswith("report:"):
        return Quantity(Kind.REPORT, detail=ev.metric.removeprefix("report:"))
    if ev.note.startswith("component "):
        return Quantity(Kind.COMPONENT, detail=ev.metric)
    if ev.note.startswith("silent since"):
        return Quantity(Kind.SILENCE, "min", 0)
    base, _, derived = ev.metric.partition(":")
    of = METRICS.get(base, PLAIN)
    if not derived:
        return of
    window = _WINDOW.match(derived)
    if window:
        aggregate = window.group(1)
        if aggregate == "count":
            # How many readings came: of a count metric, its unit ("attempts").
            return Quantity(Kind.COUNT, of.unit if of.kind is Kind.COUNT else "", 0)
        if aggregate == "rate":  # per second over the window
            unit = f"{of.unit}/s" if of.unit in ("requests",) else ""
            return Quantity(Kind.MEASURE, unit, 1)
        if aggregate == "sum":
            return of
        # mean, max, min: a count metric's mean is no longer whole
        return replace(of, kind=Kind.MEASURE, decimals=max(of.decimals, 1))
    if derived == "rate_per_h":
        return Quantity(Kind.MEASURE, f"{of.unit}/h" if of.unit else "", 2, fixed=of.fixed)
    if derived == "z" or derived.startswith("ears_"):
        return Quantity(Kind.SCORE, "", 1)
    return PLAIN


def _decimals(value: float, q: Quantity) -> int:
    # "2.917 yêu cầu/giây", "150 mm": beyond a hundred, decimals of a free quantity are noise
    return 0 if not q.fixed and abs(value) >= 100 else q.decimals


def number(value: float, q: Quantity, lang: str = "vi") -> str:
    """``value`` as written: decimal comma and a point between thousands in Vietnamese
    and Khmer, the other way round in English; whole kinds without decimals."""
    decimals = _decimals(value, q)
    value = round(value, decimals) + 0.0  # no "-0"
    text = f"{value:,.{decimals}f}"
    if decimals and not q.fixed:
        text = text.rstrip("0").rstrip(".")
    if lang == "en":
        return text
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".")


def _unit(q: Quantity, value: float, lang: str) -> str:
    words = UNITS.get(q.unit)
    if words is None:
        return q.unit
    word = words.get(lang, words["vi"])
    if lang == "en" and q.unit in SINGULAR_EN and round(abs(value), q.decimals) == 1:
        return SINGULAR_EN[q.unit]
    return word


def duration(minutes: float, lang: str = "vi", spoken: bool = False) -> str:
    """A silence as people say it: "45 phút", "1 giờ 48 phút", "2 h"."""
    total = max(0, round(minutes))
    h, m = divmod(total, 60)
    forms = (_DURATION_SPOKEN if spoken else _DURATION).get(lang, _DURATION["vi"])
    if h == 0:
        text = forms[0].format(m=m)
    else:
        text = forms[1].format(h=h) if m == 0 else forms[2].format(h=h, m=m)
    if spoken and lang == "en":  # "1 hour and 1 minute"
        text = re.sub(r"\b1 hours\b", "1 hour", re.sub(r"\b1 minutes\b", "1 minute", text))
    return text


def written(ev: Evidence, lang: str = "vi", value: float | None = None) -> str:
    """``ev``'s value (or ``value`` in the same unit: a threshold, a margin) with its
    unit, or none: "4,38 m", "175", "20 lần", "41%", "1 giờ 48 phút". A report is its
    severity, a component its level: words of the template (see :func:`severity`)."""
    q = describe(ev)
    v = ev.value if value is None else value
    if q.kind is Kind.SILENCE:
        return duration(v, lang)
    if q.kind is Kind.REPORT:
        return severity(ev).value
    if q.kind is Kind.COMPONENT:
        return str(round(v))
    return _with_unit(q, v, lang)


def _with_unit(q: Quantity, v: float, lang: str) -> str:
    text = number(v, q, lang)
    unit = _unit(q, v, lang)
    if not unit:
        return text
    return f"{text}{unit}" if q.unit == "%" else f"{text} {unit}"


_LAST_READING = re.compile(r"last reading (\S+)")


def last_reading(ev: Evidence, lang: str = "vi") -> str:
    """The last reading a computed value came from (the engine notes it), in the
    metric's own unit; "" when the evidence has none."""
    found = _LAST_READING.fullmatch(ev.note)
    if found is None:
        return ""
    try:
        value = float(found.group(1))
    except ValueError:
        return ""
    return _with_unit(METRICS.get(ev.metric.partition(":")[0], PLAIN), value, lang)


def spoken(ev: Evidence, lang: str = "vi", value: float | None = None) -> str:
    """As :func:`written`, to be read aloud: units in words ("4,38 mét")."""
    q = describe(ev)
    v = ev.value if value is None else value
    if q.kind is Kind.SILENCE:
        return duration(v, lang, spoken=True)
    if q.kind in (Kind.REPORT, Kind.COMPONENT):
        return written(ev, lang, value)
    text = number(v, replace(q, fixed=False), lang)  # said: "4 mét", not "4,00 mét"
    words = SPOKEN_UNITS.get(lang, SPOKEN_UNITS["vi"])
    unit = words.get(q.unit) or _unit(q, v, lang)
    return f"{text} {unit}" if unit else text


def severity(ev: Evidence) -> Severity:
    """The severity of a report's evidence (its value is the severity's rank)."""
    return Severity.of_rank(round(ev.value))


def kind(ev: Evidence) -> str:
    return describe(ev).kind.value


def measured(ev: Evidence) -> bool:
    """The value is a number that a threshold is compared with (not a silence, a
    report or a component)."""
    return describe(ev).kind in MEASURED


def reached(ev: Evidence) -> bool:
    """The value equals its threshold as written (the margin shows as zero): say
    "reached", not "above by 0"."""
    if ev.threshold is None:
        return False
    q = describe(ev)
    margin = abs(ev.value - ev.threshold)
    return round(margin, _decimals(margin, q)) == 0
