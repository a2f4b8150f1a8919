"""The colours of the official disaster risk levels, and each level's number and name.

Decision 18/2021/QĐ-TTg, Article 4 clause 3: a hazard's risk is graded in at most five
levels, each tied to one colour on every map (Appendix XII): level 1 light blue, low
risk; 2 light yellow, medium; 3 orange, high; 4 red, very high; 5 purple,
catastrophic. The Decision names the colours but gives no colour codes: the codes
below are canhbao's rendering of those names, chosen so that black text reads on the
light ones and white text on the dark ones.

Every place that shows a risk level in colour takes it from here (the HTML e-mails,
the backtest report, the console map), and shows the level's number and name beside
the colour: a colour alone says nothing to a colour-blind reader, nor on a black and
white printout.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from markupsafe import Markup

DECISION = "QĐ 18/2021/QĐ-TTg"


@dataclass(frozen=True)
class RiskColour:
    level: int
    hex: str  # canhbao's rendering of the named colour
    text: str  # the text colour that reads on it
    colour_vi: str  # the colour as the Decision names it
    colour_en: str
    name_vi: str  # the level's name (Article 4 clause 3)
    name_en: str
    name_km: str

    def name(self, lang: str) -> str:
        return {"vi": self.name_vi, "en": self.name_en, "km": self.name_km}.get(lang, self.name_vi)

    def colour_name(self, lang: str) -> str:
        return self.colour_en if lang == "en" else self.colour_vi


PALETTE: dict[int, RiskColour] = {
    c.level: c
    for c in (
        RiskColour(1, "#9fd3f2", "#000000", "xanh dương nhạt", "light blue",
                   "rủi ro thấp", "low", "ទាប"),
        RiskColour(2, "#fff29e", "#000000", "vàng nhạt", "light yellow",
                   "rủi ro trung bình", "medium", "មធ្យម"),
        RiskColour(3, "#ff9a2e", "#000000", "da cam", "orange",
                   "rủi ro lớn", "high", "ខ្ពស់"),
        RiskColour(4, "#d7261e", "#ffffff", "đỏ", "red",
                   "rủi ro rất lớn", "very high", "ខ្ពស់ណាស់"),
        RiskColour(5, "#7b2d8e", "#ffffff", "tím", "purple",
                   "rủi ro ở mức thảm họa", "catastrophic", "មហន្តរាយ"),
    )
}  # fmt: skip
LEVELS = tuple(sorted(PALETTE))


def of(level: int) -> RiskColour:
    """The colour and names of risk level ``level`` (1-5); ValueError for any other."""
    try:
        return PALETTE[level]
    except KeyError:
        raise ValueError(f"risk level {level!r} does not exist (1 to 5)") from None


def colour(level: int) -> str:
    return of(level).hex


def label(level: int, lang: str = "vi") -> str:
    """The level's number and name: "cấp 3 – rủi ro lớn", "level 3 – high"."""
    c = of(level)
    word = {"vi": "cấp", "en": "level", "km": "កម្រិត"}.get(lang, "cấp")
    return f"{word} {level} – {c.name(lang)}"


def badge_html(level: int, lang: str = "vi") -> Markup:
    """An inline badge for HTML (e-mails, reports): the colour with the level's number and
    name written on it, in a style mail clients keep (inline, no classes)."""
    c = of(level)
    return Markup(
        f'<span style="background: {c.hex}; color: {c.text}; padding: 2px 8px; '
        f'border-radius: 3px; font-weight: bold; white-space: nowrap;" '
        f'title="{escape(c.colour_name(lang))}">{escape(label(level, lang))}</span>'
    )


def legend_html(lang: str = "en") -> Markup:
    """Every level in a row, for a chart's legend."""
    return Markup(" ".join(badge_html(level, lang) for level in LEVELS))
