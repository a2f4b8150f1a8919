"""Rendering notifications with sandboxed Jinja2 templates.

Templates are configuration an engineer may edit, so they run in Jinja's
sandbox: a template cannot reach Python internals (``__class__``, ``__globals__``
...) however it is written.

Besides the one-line ``summary``, the channel templates (``templates/<channel>/``,
rendered by :mod:`alerting.render`) use the filters defined here: evidence values
with their unit or none (``qty``, ``qty_spoken``, :mod:`alerting.quantities`), times
and levels written for reading (``time_local``, ``level_label``) and for speaking
aloud (``time_spoken``, ``level_spoken``), in Vietnamese, English and Khmer.
"""

from __future__ import annotations

import types
from collections import ChainMap
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, Undefined, select_autoescape
from jinja2.environment import TemplateModule
from jinja2.runtime import Context, Macro, new_context
from jinja2.sandbox import SandboxedEnvironment

from alerting import palette, quantities, risk
from topics.models import Evidence, Warning

TEMPLATE_DIR = Path(__file__).parent / "templates"
VIETNAM = timezone(timedelta(hours=7), "ICT")

# How a level is called, per domain (the words the public bulletins use).
_LEVEL_WORD = {
    "river_flood": ("BÁO ĐỘNG", "ALARM LEVEL"),
}
_UNITS = {
    "water_level_m": "m",
    "rain_mm": "mm",
    "rain_24h_mm": "mm",
    "pm25_ugm3": "µg/m³",
    "water_level_m:rate_per_h": "m/h",
    "grid_frequency_hz": "Hz",
    "fuel_reserve_days": "ngày",
    "soil_moisture_pct": "%",
}


def _num_vi(value: float) -> str:
    return f"{value:.2f}".replace(".", ",")


def _num_en(value: float) -> str:
    return f"{value:.2f}"


# Pure, and a burst's warnings were mostly observed in the same few minutes.
@lru_cache(maxsize=4096)
def _time_local(value: datetime) -> str:
    return value.astimezone(VIETNAM).strftime("%H:%M %d/%m/%Y")


@lru_cache(maxsize=4096)
def _time_short(value: datetime) -> str:
    """Vietnam time without the year, for SMS: "00:20 07/10"."""
    return value.astimezone(VIETNAM).strftime("%H:%M %d/%m")


# --- Filters for the channel templates (alerting.render) -------------------------------

_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5}
_NUMBER_WORDS = {
    "vi": ("không", "một", "hai", "ba", "bốn", "năm"),
    "en": ("zero", "one", "two", "three", "four", "five"),
    "km": ("សូន្យ", "មួយ", "ពីរ", "បី", "បួន", "ប្រាំ"),
}
# Units as they are said aloud (a loudspeaker script has no abbreviations).
_UNIT_WORDS = {
    "vi": {
        "m": "mét",
        "mm": "mi-li-mét",
        "µg/m³": "micrôgam trên mét khối",
        "m/h": "mét mỗi giờ",
        "Hz": "héc",
        "ngày": "ngày",
        "%": "phần trăm",
    },
    "en": {
        "m": "metres",
        "mm": "millimetres",
        "µg/m³": "micrograms per cubic metre",
        "m/h": "metres per hour",
        "Hz": "hertz",
        "ngày": "days",
        "%": "per cent",
    },
    "km": {
        "m": "ម៉ែត្រ",
        "mm": "មីលីម៉ែត្រ",
        "µg/m³": "មីក្រូក្រាមក្នុងមួយម៉ែត្រគូប",
        "m/h": "ម៉ែត្រក្នុងមួយម៉ោង",
        "Hz": "ហឺត",
        "ngày": "ថ្ងៃ",
        "%": "ភាគរយ",
    },
}
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_AND = {"vi": "và", "en": "and", "km": "និង"}


def _num(value: float, lang: str = "vi") -> str:
    """A measured value as written: decimal comma in Vietnamese and Khmer, point in English."""
    return _num_en(value) if lang == "en" else _num_vi(value)


def _num_spoken(value: float, lang: str = "vi") -> str:
    """A value to read aloud: "6,42" (vi, km), "6.42" (en); whole numbers without decimals."""
    if float(value).is_integer():
        return str(int(value))
    return _num(value, lang)


def _unit_spoken(unit: str, lang: str = "vi") -> str:
    return _UNIT_WORDS.get(lang, _UNIT_WORDS["vi"]).get(unit, unit)


def _time_spoken(value: datetime, lang: str = "vi") -> str:
    """A time to read aloud, in Vietnam time: "0 giờ 20 phút ngày 7 tháng 10"."""
    t = value.astimezone(VIETNAM)
    if lang == "en":
        hour = t.hour % 12 or 12
        half = "a.m." if t.hour < 12 else "p.m."
        return f"{hour}:{t.minute:02d} {half} on {t.day} {_MONTHS_EN[t.month - 1]}"
    if lang == "km":
        minutes = f" និង {t.minute} នាទី" if t.minute else ""
        return f"ម៉ោង {t.hour}{minutes} ថ្ងៃទី {t.day} ខែ {t.month}"
    minutes = f" {t.minute} phút" if t.minute else ""
    return f"{t.hour} giờ{minutes} ngày {t.day} tháng {t.month}"


def _level_number(warning: Warning) -> int | None:
    """The level as a number when its name is a Roman numeral ("III" -> 3)."""
    return _ROMAN.get(warning.level_name.strip().upper())


def _level_name(warning: Warning, at: int | None) -> str | None:
    """The name of level ``at`` (default: the warning's own): Roman numerals are derived
    from the number; another level of a free-named scale ("mưa to") has no known name."""
    if at is None or at == warning.level:
        return warning.level_name
    roman = _level_number(warning) is not None or (
        not warning.level_name and warning.hazard in _LEVEL_WORD  # an all-clear has no name
    )
    if roman and at in _ROMAN.values():
        return next(name for name, n in _ROMAN.items() if n == at)
    return None


# Level names written in English by the engine (its sensor-fault notices) and by shipped
# rule packs, in each language: a Vietnamese message must not say "landslide risk".
_NOTICE_LEVELS = {
    "fault": {"vi": "lỗi cảm biến", "en": "sensor fault", "km": "ឧបករណ៍ចាប់សញ្ញាខូច"},
    "data gap": {"vi": "mất số liệu", "en": "data gap", "km": "បាត់ទិន្នន័យ"},
    "landslide risk": {"vi": "nguy cơ sạt lở", "en": "landslide risk", "km": "ហានិភ័យដីបាក់"},
}


def _level_label(warning: Warning, lang: str = "vi", at: int | None = None) -> str:
    """A level as written: "báo động III", "alarm level III", "កម្រិតប្រកាសអាសន្នទី 3";
    ``at`` names another level of the same warning (e.g. ``previous_level``)."""
    level = warning.level if at is None else at
    name = _level_name(warning, at)
    if name in _NOTICE_LEVELS:
        return _NOTICE_LEVELS[name].get(lang, name)
    n = _ROMAN.get(name.strip().upper()) if name else None
    if warning.hazard in _LEVEL_WORD and n is not None:
        return {
            "vi": f"báo động {name}",
            "en": f"alarm level {name}",
            "km": f"កម្រិតប្រកាសអាសន្នទី {n}",
        }.get(lang, f"{name}")
    if n is not None:
        return {"vi": f"cấp {name}", "en": f"level {name}"}.get(lang, f"កម្រិត {n}")
    if name is None:
        return {"vi": f"cấp {level}", "en": f"level {level}"}.get(lang, f"កម្រិត {level}")
    return {"vi": name, "en": f"level {level} ({name})"}.get(lang, f"កម្រិត {level} ({name})")


def _level_spoken(warning: Warning, lang: str = "vi", at: int | None = None) -> str:
    """A level as said aloud, never a bare numeral: "mức báo động ba", "alarm level three"."""
    level = warning.level if at is None else at
    name = _level_name(warning, at)
    if name in _NOTICE_LEVELS:
        return _NOTICE_LEVELS[name].get(lang, name)
    n = _ROMAN.get(name.strip().upper()) if name else None
    if n is None and name and lang == "vi":
        return f"mức {name}"  # a named level ("mưa to") is already words
    if n is None:
        n = level
    words = _NUMBER_WORDS.get(lang, _NUMBER_WORDS["vi"])
    word = words[n] if 0 <= n < len(words) else str(n)
    flood = warning.hazard in _LEVEL_WORD
    if lang == "en":
        return f"alarm level {word}" if flood else f"level {word}"
    if lang == "km":
        return f"កម្រិតប្រកាសអាសន្នទី{word}" if flood else f"កម្រិតទី{word}"
    return f"mức báo động {word}" if flood else f"cấp {word}"


def _unit_of(metric: str) -> str:
    """The unit of a metric as written ("m", "mm"); "" when not known."""
    return _UNITS.get(metric, "")


# --- Evidence values, each with its unit or none (alerting.quantities) -----------------


def _qty(ev: Evidence, lang: str = "vi", value: float | None = None) -> str:
    """The evidence's value (or ``value``: its threshold, a margin) as written, with its
    unit or none: "4,38 m", "175", "20 lần", "1 giờ 48 phút"."""
    return quantities.written(ev, lang, value)


def _qty_spoken(ev: Evidence, lang: str = "vi", value: float | None = None) -> str:
    return quantities.spoken(ev, lang, value)


def _qty_kind(ev: Evidence) -> str:
    """measure, count, index, score, silence, report or component."""
    return quantities.kind(ev)


def _report_severity(ev: Evidence) -> str:
    """A report evidence's severity (Extreme ... Unknown), from the rank it records."""
    return quantities.severity(ev).value


def _component_level(ev: Evidence, lang: str = "vi") -> str:
    """A compound rule's component at its level: "báo động II", "cấp 1", "level 1"."""
    n = round(ev.value)
    roman = next((name for name, v in _ROMAN.items() if v == n), str(n))
    if ev.metric in _LEVEL_WORD:
        return {"vi": f"báo động {roman}", "en": f"alarm level {roman}"}.get(
            lang, f"កម្រិតប្រកាសអាសន្នទី {n}"
        )
    return {"vi": f"cấp {n}", "en": f"level {n}"}.get(lang, f"កម្រិត {n}")


def _join_and(items: Any, lang: str = "vi") -> str:
    """["A", "B", "C"] -> "A, B và C" (the last pair joined by the word for "and")."""
    names = [str(i) for i in items]
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {_AND.get(lang, 'và')} {names[-1]}"


# What SandboxedEnvironment.wrap_str_format looks at: neither type can be subclassed.
_METHODS = (types.MethodType, types.BuiltinMethodType)
# Callables that take no context and that the sandbox lets call: the templates' own
# macros and built-in methods (``dict.get``); neither can carry ``jinja_pass_arg``,
# ``unsafe_callable`` or ``alters_data``, which is all Jinja looks for on a call.
_PLAIN_CALLABLES = (Macro, types.BuiltinMethodType)
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Template(Template):
    def new_context(
        self,
        vars: dict[str, Any] | None = None,
        shared: bool = False,
        locals: Mapping[str, Any] | None = None,
    ) -> Context:
        # Jinja's, with the template's globals (a ChainMap: its own over the
        # environment's) flattened by dict.update, first map last so that it wins as
        # in the ChainMap, instead of key by key in Python at every render and include.
        g = self.globals
        flat: dict[str, Any] = {}
        for layer in reversed(g.maps) if isinstance(g, ChainMap) else (g,):
            flat.update(layer)
        return new_context(self.environment, self.name, self.blocks, vars, shared, flat, locals)

    def _get_default_module(self, ctx: Context | None = None) -> TemplateModule:
        # Jinja's, without turning the template's globals (a ChainMap) into a set at
        # each ``{% import %}`` of each render: only names missing from them matter.
        names, mine = self.environment.globals, self.globals  # the first is in the second
        if ctx is not None and any(k not in names and k not in mine for k in ctx.globals_keys):
            return super()._get_default_module(ctx)
        if self._module is None:
            self._module = self.make_module()
        return self._module


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, as strict, with two lookups remembered for the process (the
    templates ship with the code and change only with it, a restart: ``auto_reload``
    is off). A burst of warnings renders the same few templates thousands of times,
    and these lookups were a third of the route stage's time:

    - which template a list of names selects (``select_template``: the first name, an
      audience's own file, is most often absent, and each miss asked the file system
      and raised), and ``get_template`` for each ``{% import %}`` of each render;
    - the sandbox's verdict on an attribute: it depends only on the object's type and
      the attribute's name (:meth:`SandboxedEnvironment.is_safe_attribute` and
      ``is_internal_attribute`` test those alone), so it is worked out once per pair."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.template_class = _Template
        self._safe: dict[tuple[type, str], bool] = {}
        self._chosen: dict[tuple[str, ...], Template] = {}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        key = (type(obj), attr)
        safe = self._safe.get(key)
        if safe is None:
            safe = self._safe[key] = super().is_safe_attribute(obj, attr, value)
        return safe

    def getattr(self, obj: Any, attribute: str) -> Any:
        # SandboxedEnvironment.getattr, in the same order, with the verdict remembered
        # and ``str.format`` wrapped as the sandbox does (only a method can be one).
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            # A plain dict has no other attributes: go straight to the item, as
            # Jinja would after the attribute lookup failed.
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=attribute)
        try:
            value = getattr(obj, attribute)
        except AttributeError:
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=attribute)
        if type(value) in _METHODS:
            fmt = self.wrap_str_format(value)
            if fmt is not None:
                return fmt
        safe = self._safe.get((type(obj), attribute))
        if safe or (safe is None and self.is_safe_attribute(obj, attribute, value)):
            return value
        return self.unsafe_undefined(obj, attribute)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if type(obj) in _PLAIN_CALLABLES:
            # What SandboxedEnvironment.call and Context.call do for these, in short.
            kwargs.pop("_block_vars", None)
            kwargs.pop("_loop_vars", None)
            try:
                return obj(*args, **kwargs)
            except StopIteration:
                return self.undefined(
                    "value was undefined because a callable raised a StopIteration exception"
                )
        return super().call(context, obj, *args, **kwargs)

    def get_template(
        self,
        name: str | Template,
        parent: str | None = None,
        globals: MutableMapping[str, Any] | None = None,
    ) -> Template:
        if globals is not None or self.auto_reload or not isinstance(name, str):
            return super().get_template(name, parent, globals)
        if parent is not None:
            name = self.join_path(name, parent)
        found = self._chosen.get((name,))
        if found is None:
            found = self._chosen[(name,)] = super().get_template(name)
        return found

    def select_template(
        self,
        names: Iterable[str | Template] | Undefined,
        parent: str | None = None,
        globals: MutableMapping[str, Any] | None = None,
    ) -> Template:
        key = tuple(names) if isinstance(names, list | tuple) else ()
        plain = all(isinstance(n, str) for n in key) and not self.auto_reload
        if not key or not plain or globals is not None or parent is not None:
            return super().select_template(names, parent, globals)
        found = self._chosen.get(key)
        if found is None:
            found = self._chosen[key] = super().select_template(key)
        return found


@lru_cache(maxsize=4)
def environment(template_dir: Path = TEMPLATE_DIR) -> SandboxedEnvironment:
    env = _Sandbox(
        loader=FileSystemLoader(str(template_dir)),
        # "email.vi.html.j2" is HTML: the extension before .j2 decides.
        autoescape=select_autoescape(
            enabled_extensions=("html", "xml", "html.j2", "xml.j2"), default=False
        ),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        # Templates ship with the code and change only with it (a restart): without
        # this, jinja2 stats each template file at every render (the route stage's
        # largest cost under a burst of warnings).
        auto_reload=False,
    )
    env.filters.update(
        num_vi=_num_vi,
        num_en=_num_en,
        num=_num,
        time_local=_time_local,
        time_short=_time_short,
        num_spoken=_num_spoken,
        unit_spoken=_unit_spoken,
        time_spoken=_time_spoken,
        level_label=_level_label,
        level_spoken=_level_spoken,
        join_and=_join_and,
        unit_of=_unit_of,
        qty=_qty,
        qty_spoken=_qty_spoken,
        qty_kind=_qty_kind,
        measured=quantities.measured,
        reached=quantities.reached,
        report_severity=_report_severity,
        component_level=_component_level,
        last_reading=quantities.last_reading,
        # The official disaster risk level's name, number and colour (common/risk.j2).
        risk_name=lambda level, lang="vi": palette.of(level).name(lang),
        risk_label=palette.label,
        risk_badge=palette.badge_html,
        risk_cite=risk.cite,
    )
    return env


def context(warning: Warning) -> dict[str, Any]:
    ev = warning.evidence[0] if warning.evidence else None
    vi_word, en_word = _LEVEL_WORD.get(warning.hazard, ("CẤP", "LEVEL"))
    above = True
    margin = 0.0
    if ev is not None and ev.threshold is not None:
        margin = abs(ev.value - ev.threshold)
        above = ev.value >= ev.threshold
    return {
        "w": warning,
        # The evidence's unit as written in Vietnamese (templates of old; the shipped
        # ones write values with the ``qty`` filter, which knows counts and silences).
        "unit": _unit_word(ev),
        "level_word_vi": vi_word,
        "level_word_en": en_word,
        "margin": margin,
        "above": above,
    }


def _unit_word(ev: Evidence | None) -> str:
    if ev is None:
        return ""
    q = quantities.describe(ev)
    if q.kind in (quantities.Kind.REPORT, quantities.Kind.COMPONENT):
        return ""
    if q.kind is quantities.Kind.SILENCE:
        return "phút"
    return quantities.UNITS.get(q.unit, {}).get("vi", q.unit)


def render(template: str, warning: Warning, template_dir: Path = TEMPLATE_DIR) -> str:
    tpl = environment(template_dir).get_template(template)
    return " ".join(tpl.render(context(warning)).split())


def render_names(
    names: list[str], variables: dict[str, Any], template_dir: Path = TEMPLATE_DIR
) -> str:
    """Render the first of ``names`` that exists with ``variables``, as the template wrote it
    (no whitespace folding: e-mails and loudspeaker scripts keep their lines)."""
    tpl = environment(template_dir).select_template(names)
    return tpl.render(variables)


def summary(warning: Warning, lang: str = "vi") -> str:
    """One-paragraph plain-text summary of a warning state, in ``lang``."""
    return render(f"summary.{lang}.txt.j2", warning)
