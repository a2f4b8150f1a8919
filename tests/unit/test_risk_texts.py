"""Every text of a flood or heavy-rain warning states its official disaster risk level
(Decision 18/2021/QĐ-TTg) the way the national bulletins do, in every channel, language
and audience; CAP carries it as a parameter (valid against the OASIS schema) and lets
it raise the severity; routes match on it. (How those texts read otherwise, units and
spacing included, is tests/unit/test_texts.py, which renders these warnings too.)"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from alerting import palette
from alerting.cap import cap_xml
from alerting.directory import Directory
from alerting.render import LANGS, render, render_digest
from alerting.routes import Matcher, labels_of
from alerting.sms import to_gsm7
from pipeline.engine import Engine
from pipeline.rules.loader import RuleSet
from tests.unit.conftest import T0
from tests.unit.test_cap import assert_valid_cap as validate
from topics.models import Audience, Channel, Command, Reading, Warning

NUMBER = {"vi": "một hai ba bốn năm", "en": "one two three four five", "km": "មួយ ពីរ បី បួន ប្រាំ"}


def _run(
    ruleset: RuleSet,
    directory: Directory,
    rule_id: str,
    station: str,
    metric: str,
    values: list[float],
    commands: list[dict[str, Any]] | None = None,
) -> list[Warning]:
    engine = Engine(RuleSet(tuple(r for r in ruleset.rules if r.id == rule_id)), directory)
    store: dict[str, Any] = {}
    out: list[Warning] = []
    for i, value in enumerate(values):
        reading = Reading(station_id=station, domain="water", metric=metric, value=value,
                          observed_at=T0 + timedelta(hours=i))  # fmt: skip
        out += engine.on_reading(reading, store).warnings
    for i, fields in enumerate(commands or []):
        command = Command(command_id=f"c{i}", warning_id=f"{rule_id}:{station}",
                          actor="Trực ban A", at=T0 + timedelta(hours=len(values) + i),
                          **fields)  # fmt: skip
        result = engine.on_command(command, store)
        assert result.errors == []
        out += result.warnings
    return out


@pytest.fixture(scope="module")
def flood(ruleset: RuleSet, directory: Directory) -> list[Warning]:
    """Đáp Cầu (zone 3, sample) through I, II, III and back: risk levels 1, 2, 3."""
    return _run(ruleset, directory, "water.flood.dap-cau", "dap-cau", "water_level_m",
                [4.0, 4.5, 5.5, 6.5, 5.5, 3.9])  # fmt: skip


@pytest.fixture(scope="module")
def raised(ruleset: RuleSet, directory: Directory) -> Warning:
    """Thượng Cát (zone 4, sample) at II, risk level 3, raised by 1 by an operator."""
    *_, w = _run(ruleset, directory, "water.flood.thuong-cat", "thuong-cat", "water_level_m",
                 [9.5, 10.2], [{"action": "raise_risk", "risk_by": 1,
                                "reason": "lũ và sạt lở đất cùng lúc"}])  # fmt: skip
    assert (w.risk_level, w.risk_adjustment is not None) == (4, True)
    return w


@pytest.fixture(scope="module")
def rain(ruleset: RuleSet, directory: Directory) -> Warning:
    *_, w = _run(ruleset, directory, "water.rain.24h", "rg-son-dong", "rain_mm", [60, 50])
    assert w.risk_level == 1
    return w


def _line(w: Warning, lang: str, *, hazard: str = "lũ/flood/ទឹកជំនន់") -> str:
    vi, en, km = hazard.split("/")
    n = w.risk_level
    assert n is not None
    name = palette.of(n).name(lang)
    return {
        "vi": f"Cấp độ rủi ro thiên tai do {vi}: cấp {n}.",
        "en": f"Disaster risk level ({en}): {n} – {name}.",
        "km": f"កម្រិតហានិភ័យគ្រោះមហន្តរាយ ({km})៖ {n} – {name}។",
    }[lang]


def _spoken(w: Warning, lang: str) -> str:
    assert w.risk_level is not None
    word = NUMBER[lang].split()[w.risk_level - 1]
    name = palette.of(w.risk_level).name(lang)
    return {
        "vi": f"Cấp độ rủi ro thiên tai do lũ: cấp {word}, {name}.",
        "en": f"The disaster risk level for the flood is {word}, {name}.",
        "km": f"កម្រិតហានិភ័យគ្រោះមហន្តរាយ (ទឹកជំនន់)៖ កម្រិត{word} {name}។",
    }[lang]


def test_every_text_of_a_flood_warning_states_its_risk_level(flood: list[Warning]) -> None:
    active = [w for w in flood if w.active]
    assert [w.risk_level for w in active] == [1, 2, 3, 2]
    missing = []
    for w in active:
        for lang in LANGS:
            line = _line(w, lang)
            for audience in Audience:
                for channel in (Channel.SMS, Channel.EMAIL, Channel.CAP):
                    r = render(w, channel, lang, audience)
                    texts = {"text": r.text}
                    if r.sms_gsm7 is not None:
                        texts["unaccented"] = r.sms_gsm7.text
                    for form, text in texts.items():
                        want = to_gsm7(line) if form == "unaccented" else line
                        if channel is Channel.EMAIL:
                            want = f"{_fact_label(lang)}: {palette.label(w.risk_level or 0, lang)}"
                        if want not in text:
                            missing.append(f"{channel.value}/{audience.value}/{lang} {form}")
            speaker = render(w, Channel.LOUDSPEAKER, lang, Audience.CITIZEN).text
            if _spoken(w, lang) not in speaker:
                missing.append(f"loudspeaker/{lang}")
            payload = render(w, Channel.WEBHOOK, lang).payload or {}
            if line not in payload["text"][lang]:
                missing.append(f"webhook/{lang}")
            assert payload["warning"]["risk_level"] == w.risk_level
    assert not missing, missing


def _fact_label(lang: str) -> str:
    return {"vi": "Cấp độ rủi ro thiên tai", "en": "Disaster risk level",
            "km": "កម្រិតហានិភ័យគ្រោះមហន្តរាយ"}[lang]  # fmt: skip


def test_the_email_shows_the_levels_colour_number_name_and_basis(flood: list[Warning]) -> None:
    w = next(w for w in flood if w.risk_level == 3)
    vi = render(w, Channel.EMAIL, "vi")
    assert (
        "Cấp độ rủi ro thiên tai: cấp 3 – rủi ro lớn (QĐ 18/2021/QĐ-TTg Điều 45 khoản 3 điểm b)"
        in (vi.text)
    )
    assert vi.html is not None and str(palette.badge_html(3, "vi")) in vi.html
    en = render(w, Channel.EMAIL, "en")
    assert "Disaster risk level: level 3 – high (Decision 18/2021/QĐ-TTg, Article 45(3)(b))" in (
        en.text
    )
    assert en.html is not None and palette.colour(3) in en.html


def test_an_operators_raise_is_told_to_agencies_with_who_and_why(raised: Warning) -> None:
    text = render(raised, Channel.EMAIL, "vi").text
    assert "cấp 4 – rủi ro rất lớn (QĐ 18/2021/QĐ-TTg Điều 45 khoản 3 điểm a); nâng 1 cấp từ " in (
        text
    )
    assert "cấp 3 (Điều 4 khoản 4): lũ và sạt lở đất cùng lúc – Trực ban A" in text
    assert (
        "Cấp độ rủi ro thiên tai do lũ: cấp 4."
        in render(raised, Channel.SMS, "vi", Audience.CITIZEN).text
    )


def test_the_all_clear_states_no_risk_level(flood: list[Warning]) -> None:
    clear = flood[-1]
    assert not clear.active
    for lang in LANGS:
        for channel in (Channel.SMS, Channel.EMAIL, Channel.LOUDSPEAKER, Channel.WEBHOOK):
            text = render(clear, channel, lang, Audience.CITIZEN).text
            assert not re.search("rủi ro thiên tai|Disaster risk|disaster risk|ហានិភ័យគ្រោះ", text)


def test_heavy_rain_states_its_risk_level_as_heavy_rain(rain: Warning) -> None:
    hazard = "mưa lớn/heavy rain/ភ្លៀងធ្លាក់ខ្លាំង"
    for lang in LANGS:
        assert _line(rain, lang, hazard=hazard) in render(rain, Channel.SMS, lang).text


def test_digests_state_each_warnings_risk_level(flood: list[Warning], rain: Warning) -> None:
    w = next(w for w in flood if w.risk_level == 3)
    group = [w, rain]
    words = {"vi": "rủi ro thiên tai cấp", "en": "disaster risk level", "km": "ហានិភ័យកម្រិត"}
    for lang in LANGS:
        for channel in (Channel.EMAIL, Channel.SMS):
            text = render_digest(group, channel, lang).text
            assert f"{words[lang]} 3" in text and f"{words[lang]} 1" in text, (channel, lang)


def test_cap_carries_the_risk_level_and_validates(
    flood: list[Warning], raised: Warning, directory: Directory
) -> None:
    w = next(w for w in flood if w.risk_level == 3)
    root = validate(cap_xml(w, directory))
    ns = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
    for info in root.findall("cap:info", ns):
        params = {
            p.findtext("cap:valueName", namespaces=ns): p.findtext("cap:value", namespaces=ns)
            for p in info.findall("cap:parameter", ns)
        }
        assert params["VN_DISASTER_RISK_LEVEL"] == "3"
        assert params["VN_DISASTER_RISK_BASIS"] == "QĐ 18/2021/QĐ-TTg Điều 45 khoản 3 điểm b"
        lang = (info.findtext("cap:language", namespaces=ns) or "")[:2]
        assert _line(w, lang) in (info.findtext("cap:description", namespaces=ns) or "")
    # An operator's raise to 4 makes the message Extreme (the rule says Severe at II).
    assert raised.severity.value == "Severe"
    xml = cap_xml(raised, directory)
    validate(xml)
    assert "<severity>Extreme</severity>" in xml
    assert "VN_DISASTER_RISK_ADJUSTMENT" in xml and "lũ và sạt lở đất cùng lúc" in xml
    # the all-clear (Cancel) carries none
    assert "VN_DISASTER_RISK" not in cap_xml(flood[-1], directory)


def test_routes_match_on_the_risk_level(flood: list[Warning], rain: Warning) -> None:
    high = Matcher.parse("risk_level>=3")
    assert [high.matches(labels_of(w)) for w in flood] == [False, False, True, False, False]
    assert Matcher.parse('risk_level="1"').matches(labels_of(rain))
    # a warning without a risk level matches no comparison, and risk_level="" finds it
    assert not Matcher.parse("risk_level>=1").matches(labels_of(flood[-1]))
    assert Matcher.parse('risk_level=""').matches(labels_of(flood[-1]))
