"""Rendering notifications with sandboxed Jinja2 templates.

Templates are configuration an engineer may edit, so they run in Jinja's
sandbox: a template cannot reach Python internals (``__class__``, ``__globals__``
...) however it is written.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from topics.models import Warning

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


def _time_local(value: datetime) -> str:
    return value.astimezone(VIETNAM).strftime("%H:%M %d/%m/%Y")


@lru_cache(maxsize=4)
def environment(template_dir: Path = TEMPLATE_DIR) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(template_dir)),
        autoescape=select_autoescape(enabled_extensions=("html", "xml"), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )
    env.filters.update(num_vi=_num_vi, num_en=_num_en, time_local=_time_local)
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
        "unit": (_UNITS.get(ev.metric) or _UNITS.get(ev.metric.split(":")[0], ""))
        if (ev and ":" not in ev.metric) or (ev and ev.metric in _UNITS)
        else "",
        "level_word_vi": vi_word,
        "level_word_en": en_word,
        "margin": margin,
        "above": above,
    }


def render(template: str, warning: Warning, template_dir: Path = TEMPLATE_DIR) -> str:
    tpl = environment(template_dir).get_template(template)
    return " ".join(tpl.render(context(warning)).split())


def summary(warning: Warning, lang: str = "vi") -> str:
    """One-paragraph plain-text summary of a warning state, in ``lang``."""
    return render(f"summary.{lang}.txt.j2", warning)
