"""Digests (alerting.render.render_digest) in vi, en and km, and reminders: what a
group flush says when it lists several warnings or repeats one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerting.directory import Directory
from alerting.governance import lead_agency
from alerting.messages import flush_renderer, renderer
from alerting.render import LANGS, REMINDER_MARK, RenderError, render, render_digest
from topics.models import (
    Audience,
    Channel,
    Domain,
    Evidence,
    Phase,
    ScopeTier,
    Severity,
    Transition,
    Warning,
)

T0 = datetime(2025, 10, 7, 3, 0, tzinfo=UTC)
COMMUNES = ("bn-vu-ninh", "bn-kinh-bac", "bn-hap-linh")
NAMES = ("Phường Vũ Ninh", "Phường Kinh Bắc", "Phường Hạp Lĩnh")
LABELS = {"domain": "health", "hazard": "dengue_outbreak"}
HEADLINE = {"vi": "TỔNG HỢP 3 CẢNH BÁO: Dịch sốt xuất huyết",
            "en": "DIGEST OF 3 WARNINGS: Dengue outbreak",
            "km": "សេចក្តីសង្ខេបការព្រមាន 3៖ ការផ្ទុះជំងឺគ្រុនឈាម"}  # fmt: skip
NEW = {"vi": "[mới]", "en": "[new]", "km": "[ថ្មី]"}
CLEAR = {"vi": "HẾT CẢNH BÁO", "en": "ALL CLEAR", "km": "បញ្ចប់ការព្រមាន"}
LEAD = {"vi": "Sở Y tế", "en": "Department of Health", "km": "មន្ទីរសុខាភិបាល"}
EXERCISE = {"vi": "[DIỄN TẬP]", "en": "[EXERCISE]", "km": "[សមយុទ្ធ]"}


@pytest.fixture
def dengue(directory: Directory) -> Callable[..., Warning]:
    def build(commune: str, version: int = 1, level: int = 1, **overrides: Any) -> Warning:
        fields: dict[str, Any] = dict(
            warning_id=f"health.dengue.commune:{commune}", version=version,
            rule_id="health.dengue.commune", domain=Domain.HEALTH, hazard="dengue_outbreak",
            subject=commune, level=level, level_name="vượt ngưỡng dịch" if level else "",
            transition=Transition.RAISED if level else Transition.CLEARED,
            previous_level=0 if level else 1, severity=Severity.MODERATE,
            areas=[directory.area(commune)], scope_tier=ScopeTier.COMMUNE,
            lead_agency=lead_agency(directory, Domain.HEALTH, Phase.INCIDENT),
            evidence=[Evidence(station_id=f"cdc-{commune}", metric="dengue_cases_weekly",
                               value=25, observed_at=T0, threshold=18)],
            raised_at=T0, updated_at=T0 + timedelta(minutes=version), labels={"disease": "dengue"},
            annotations={"summary_vi": "Số ca sốt xuất huyết vượt kênh dịch",
                         "summary_en": "Dengue cases above the endemic channel"},
        )  # fmt: skip
        fields.update(overrides)
        return Warning(**fields)

    return build


@pytest.fixture
def burst(dengue) -> list[Warning]:
    """Two new dengue warnings and the all-clear of a third."""
    return [dengue(COMMUNES[0]), dengue(COMMUNES[1]), dengue(COMMUNES[2], version=2, level=0)]


def changed(ws: list[Warning]) -> set[str]:
    return {w.warning_id for w in ws}


@pytest.mark.parametrize("lang", LANGS)
def test_a_digest_lists_every_warning_in_each_language(burst, lang) -> None:
    r = render_digest(burst, Channel.EMAIL, lang, changed=changed(burst), labels=LABELS)
    assert r.subject == HEADLINE[lang]
    lines = [line for line in r.text.splitlines() if line.startswith("- ")]
    assert len(lines) == 3
    for name, line in zip(NAMES, lines, strict=True):
        assert line.startswith(f"- {name}")
    assert NEW[lang] in lines[0] and NEW[lang] in lines[1]
    assert CLEAR[lang] in lines[2]
    assert all("health.dengue.commune:" in line for line in lines)  # ids to act upon
    assert LEAD[lang] in r.text
    assert r.html is not None and all(name in r.html for name in NAMES)
    assert r.html.count("<li") == 3


def test_the_webhook_digest_carries_every_warning_and_all_three_texts(burst) -> None:
    r = render_digest(burst, Channel.WEBHOOK, "vi", changed={burst[0].warning_id},
                      labels=LABELS)  # fmt: skip
    assert r.payload is not None
    p = r.payload
    assert p["type"] == "canhbao.digest" and p["group"] == LABELS and p["reminder"] is False
    assert [Warning.model_validate(w) for w in p["warnings"]] == burst
    assert p["changed"] == [burst[0].warning_id]
    assert set(p["text"]) == set(LANGS) and r.text == p["text"]["vi"]
    for lang in LANGS:
        assert p["text"][lang].startswith(HEADLINE[lang])
    # Unchanged members are listed without a tag.
    assert (
        "Phường Kinh Bắc: vượt ngưỡng dịch (trung bình), 25 ca lúc 10:00 07/10." in p["text"]["vi"]
    )


def test_an_sms_digest_is_compact_and_bounded(dengue) -> None:
    ws = [dengue(c) for c in ("bn-vu-ninh", "bn-kinh-bac", "bn-hap-linh", "bn-bac-giang")]
    r = render_digest(ws, Channel.SMS, "vi", changed=changed(ws))
    assert r.sms is not None and r.sms.segments <= 6 and not r.sms.truncated
    assert r.text.startswith("TỔNG HỢP 4 CẢNH BÁO: Dịch sốt xuất huyết. Phường Vũ Ninh: ")
    assert "\n" not in r.text and r.sms_gsm7 is not None


@pytest.mark.parametrize("lang", LANGS)
def test_a_reminder_digest_says_so_after_the_exercise_mark(burst, lang) -> None:
    drill = [w.model_copy(update={"exercise": True}) for w in burst[:2]]
    for channel in (Channel.WEBHOOK, Channel.EMAIL, Channel.SMS):
        r = render_digest(drill, channel, lang, reminder=True)
        assert r.subject.startswith(f"{EXERCISE[lang]} {REMINDER_MARK[lang]} ")
        assert NEW[lang] not in r.text  # a reminder is about nothing new
    with pytest.raises(RenderError, match="mix exercise"):
        render_digest([burst[0], drill[1]], Channel.WEBHOOK, lang)


def test_a_digest_needs_several_warnings_and_a_digest_channel(burst) -> None:
    with pytest.raises(ValueError, match="several"):
        render_digest(burst[:1], Channel.WEBHOOK)
    with pytest.raises(ValueError, match="not cap"):
        render_digest(burst, Channel.CAP)


def test_html_digest_escapes_what_it_quotes(dengue) -> None:
    odd = dengue("bn-vu-ninh", annotations={"summary_vi": "<b>x</b>"}, hazard="odd_hazard")
    r = render_digest([odd, dengue("bn-kinh-bac")], Channel.EMAIL, "vi")
    assert r.html is not None and "<b>x</b>" not in r.html and "&lt;b&gt;x&lt;/b&gt;" in r.html


@pytest.mark.parametrize("channel", [Channel.WEBHOOK, Channel.EMAIL, Channel.SMS])
def test_one_warning_renders_exactly_as_today_and_its_reminder_is_marked(
    dengue, directory, channel
) -> None:
    w = dengue("bn-vu-ninh")
    flush = flush_renderer()
    today = renderer(directory)(w, channel, "vi", Audience.AGENCY)
    assert flush([w], frozenset(), channel, "vi", Audience.AGENCY, False, LABELS) == today
    again = flush([w], frozenset(), channel, "vi", Audience.AGENCY, True, LABELS)
    assert again.body.startswith("[NHẮC LẠI] ")
    assert again.subject == f"[NHẮC LẠI] {today.subject}"
    if channel is Channel.WEBHOOK:
        assert again.payload["reminder"] is True
        assert all(again.payload["text"][c].startswith(REMINDER_MARK[c]) for c in LANGS)
    if channel is Channel.EMAIL:
        assert again.html is not None and f"[NHẮC LẠI] {today.subject}" in again.html


def test_a_drill_reminder_keeps_the_exercise_mark_first(dengue) -> None:
    w = dengue("bn-vu-ninh", exercise=True)
    for lang in LANGS:
        r = render(w, Channel.SMS, lang, reminder=True)
        assert r.text.startswith(f"{EXERCISE[lang]} {REMINDER_MARK[lang]} ")
    with pytest.raises(ValueError, match="reminders"):
        render(w, Channel.LOUDSPEAKER, "vi", reminder=True)
