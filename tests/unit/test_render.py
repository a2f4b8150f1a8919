"""Channel renderings (alerting.render) and ``canhbao alerts render`` (canhbao.alerts_cli)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import types
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError

from alerting.directory import Directory
from alerting.governance import lead_agency
from alerting.render import (
    LANGS,
    Rendered,
    RenderError,
    cap_texts,
    render,
    starts_marked,
)
from alerting.sms import GSM7_BASIC, GSM7_EXTENSION, is_gsm7
from alerting.templates import TEMPLATE_DIR, summary
from canhbao import alerts_cli
from pipeline.lifecycle import Context
from pipeline.rules.model import Rule
from tests.helpers import step
from topics.models import (
    Agency,
    Area,
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

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "warnings" / "dap-cau-level3.json"
TEXT_CHANNELS = [Channel.EMAIL, Channel.SMS, Channel.WEBHOOK, Channel.LOUDSPEAKER, Channel.CAP]
MARK = {"vi": "[DIỄN TẬP", "en": "[EXERCISE", "km": "[សមយុទ្ធ"}
SPOKEN_MARK = {"vi": "Diễn tập.", "en": "Exercise.", "km": "សមយុទ្ធ។"}
# Words of the exercise mark that must not appear in a real message.
DRILL_WORDS = {"vi": "DIỄN TẬP", "en": "EXERCISE", "km": "សមយុទ្ធ"}


@pytest.fixture(scope="module")
def level_three() -> Warning:
    """The example file: Đáp Cầu at 6.42 m, escalated from II to III."""
    return Warning.model_validate_json(EXAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def sequence(dap_cau: Rule, ctx: Context, make_reading: Any) -> list[Warning]:
    """raised I, escalated II, escalated III, deescalated II, cleared."""
    out: list[Warning] = []
    w: Warning | None = None
    for minutes, value in enumerate([4.35, 5.38, 6.42, 6.10, 4.00]):
        w = step(dap_cau, w, make_reading(value, minutes=minutes * 10), ctx)
        assert w is not None
        out.append(w)
    return out


@pytest.fixture
def cleared(sequence: list[Warning]) -> Warning:
    w = sequence[-1]
    assert w.transition is Transition.CLEARED
    return w


def _drill(w: Warning) -> Warning:
    return w.model_copy(update={"exercise": True})


def _rain() -> Warning:
    """A non-flood warning with a named (not Roman) level."""
    t = datetime.fromisoformat("2025-10-07T14:00:00+07:00")
    return Warning(
        warning_id="water.rain.24h:rg-son-dong",
        version=1,
        rule_id="water.rain.24h",
        domain=Domain.WATER,
        hazard="heavy_rain",
        subject="rg-son-dong",
        transition=Transition.RAISED,
        level=1,
        level_name="mưa to",
        severity=Severity.MODERATE,
        areas=[Area(code="bn-son-dong", name="Xã Sơn Động", province="Bắc Ninh")],
        scope_tier=ScopeTier.COMMUNE,
        lead_agency=Agency(
            code="snnmt",
            name_vi="Sở Nông nghiệp và Môi trường",
            name_en="Department of Agriculture and Environment",
        ),
        evidence=[
            Evidence(
                station_id="rg-son-dong",
                metric="rain_24h_mm",
                value=72.5,
                observed_at=t,
                threshold=50,
            )
        ],
        raised_at=t,
        updated_at=t,
        annotations={"summary_vi": "Lượng mưa 24 giờ", "summary_en": "24-hour rainfall"},
    )


# --- every channel x language ---------------------------------------------------------


@pytest.mark.parametrize("channel", TEXT_CHANNELS)
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("audience", list(Audience))
def test_every_channel_and_language_renders(
    level_three: Warning, channel: Channel, lang: Any, audience: Audience
) -> None:
    r = render(level_three, channel, lang, audience)
    assert isinstance(r, Rendered)
    assert (r.channel, r.lang, r.audience) == (channel, lang, audience)
    assert r.subject and r.text
    assert "{{" not in r.text and "{%" not in r.text
    assert "None" not in r.text
    assert "  " not in r.subject
    assert (r.html is not None) == (channel is Channel.EMAIL)
    assert (r.payload is not None) == (channel is Channel.WEBHOOK)
    assert (r.sms is not None) == (channel is Channel.SMS)
    assert (r.sms_gsm7 is not None) == (channel is Channel.SMS and lang != "km")
    assert DRILL_WORDS[lang] not in r.text + r.subject + (r.html or "")


@pytest.mark.parametrize("channel", TEXT_CHANNELS)
@pytest.mark.parametrize("lang", LANGS)
def test_other_hazards_render_too(channel: Channel, lang: Any) -> None:
    r = render(_rain(), channel, lang, Audience.CITIZEN)
    assert r.text


@pytest.mark.parametrize("channel", TEXT_CHANNELS)
@pytest.mark.parametrize("lang", LANGS)
def test_every_transition_renders(sequence: list[Warning], channel: Channel, lang: Any) -> None:
    for w in sequence:
        for audience in (Audience.AGENCY, Audience.CITIZEN):
            assert render(w, channel, lang, audience).text


@pytest.mark.parametrize("channel", TEXT_CHANNELS)
def test_vietnamese_keeps_its_diacritics(level_three: Warning, channel: Channel) -> None:
    r = render(level_three, channel, "vi", Audience.CITIZEN)
    assert "Cầu" in r.text
    assert "Phường Vũ Ninh" in r.text or "Vũ Ninh" in r.subject
    assert "Cau " not in r.text


def test_unknown_language_is_refused(level_three: Warning) -> None:
    with pytest.raises(ValueError, match="not supported"):
        render(level_three, Channel.SMS, "fr")  # type: ignore[arg-type]


# --- exercises ------------------------------------------------------------------------


@pytest.mark.parametrize("channel", TEXT_CHANNELS)
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("audience", [Audience.AGENCY, Audience.CITIZEN, Audience.COMMUNE])
def test_exercise_is_marked_first_everywhere(
    sequence: list[Warning], channel: Channel, lang: Any, audience: Audience
) -> None:
    for w in (sequence[2], sequence[-1]):  # level III and the all-clear
        r = render(_drill(w), channel, lang, audience)
        first = SPOKEN_MARK[lang] if channel is Channel.LOUDSPEAKER else MARK[lang]
        assert r.text.startswith(first), r.text[:60]
        assert starts_marked(r.text, channel, lang)
        if channel is Channel.EMAIL:
            assert r.subject.startswith(MARK[lang] + "]")
            assert r.html is not None
            banner = re.search(r"<div style=\"[^\"]*dashed[^\"]*\">([^<]*)", r.html)
            assert banner is not None and banner.group(1).startswith(MARK[lang])
        if channel is Channel.SMS:
            assert r.sms is not None and r.sms.text.startswith(MARK[lang])
            if r.sms_gsm7 is not None:
                assert r.sms_gsm7.text.startswith("[DIEN TAP]" if lang == "vi" else MARK[lang])
        if channel is Channel.WEBHOOK:
            assert r.payload is not None
            for code, text in r.payload["text"].items():
                assert text.startswith(MARK[code])
            assert r.payload["warning"]["exercise"] is True
        if channel is Channel.LOUDSPEAKER:
            # and said again at the end
            assert DRILL_WORDS[lang].lower() in r.text.splitlines()[-1].lower()


def test_cap_texts_of_an_exercise_are_marked(level_three: Warning) -> None:
    for lang in LANGS:
        texts = cap_texts(_drill(level_three), lang)
        for value in (texts.headline, texts.description, texts.instruction):
            assert value.startswith(MARK[lang])


def test_a_template_that_drops_the_mark_is_refused(level_three: Warning, tmp_path: Path) -> None:
    shutil.copytree(TEMPLATE_DIR, tmp_path / "t")
    citizen = tmp_path / "t" / "sms" / "sms.citizen.vi.txt.j2"
    citizen.write_text(
        citizen.read_text(encoding="utf-8").replace("{{ p.exercise_mark }}", ""), encoding="utf-8"
    )
    drill = _drill(level_three)
    with pytest.raises(RenderError, match="exercise must be marked"):
        render(drill, Channel.SMS, "vi", Audience.CITIZEN, template_dir=tmp_path / "t")
    # the real message still renders from the edited template
    assert render(level_three, Channel.SMS, "vi", Audience.CITIZEN, template_dir=tmp_path / "t")


# --- citizens: short SMS, loudspeaker script ------------------------------------------


def test_citizen_sms_level_three_fits_three_ucs2_segments(level_three: Warning) -> None:
    r = render(level_three, Channel.SMS, "vi", Audience.CITIZEN)
    assert r.sms is not None and r.sms_gsm7 is not None
    assert r.sms.encoding == "ucs2"
    assert r.sms.segments <= 3 and not r.sms.truncated
    assert all(u <= 67 for u in r.sms.units)
    text = r.sms.text
    assert text.startswith("CẢNH BÁO: Nước sông Cầu dâng cao, báo động III.")
    assert "Di chuyển người và tài sản lên cao." in text
    assert "Theo dõi loa truyền thanh." in text
    assert "Phường Vũ Ninh" in text and "Phường Kinh Bắc" in text
    assert "Cấp độ rủi ro thiên tai do lũ: cấp 3." in text  # as the national bulletins say
    # the unaccented form fits two GSM-7 segments (one, before it stated the risk level)
    assert r.sms_gsm7.encoding == "gsm7" and r.sms_gsm7.segments <= 2
    assert r.sms_gsm7.text.startswith("CANH BAO: Nuoc song Cau dang cao, bao dong III.")
    assert all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in r.sms_gsm7.text)
    # a drill still fits without truncation (its two marks take a fourth segment)
    drill = render(_drill(level_three), Channel.SMS, "vi", Audience.CITIZEN).sms
    assert drill is not None and not drill.truncated and drill.segments <= 4


@pytest.mark.parametrize("audience", list(Audience))
@pytest.mark.parametrize("lang", ["vi", "en"])
def test_no_sms_is_truncated_for_the_example(
    level_three: Warning, lang: Any, audience: Audience
) -> None:
    for w in (level_three, _drill(level_three)):
        r = render(w, Channel.SMS, lang, audience)
        assert r.sms is not None and r.sms_gsm7 is not None
        assert not r.sms.truncated and not r.sms_gsm7.truncated
        assert is_gsm7(r.sms_gsm7.text)


def test_agency_sms_has_the_facts(level_three: Warning) -> None:
    text = render(level_three, Channel.SMS, "vi", Audience.AGENCY).text
    assert "BÁO ĐỘNG III (tăng từ II)" in text
    assert "6,42 m lúc 00:20 07/10" in text
    assert "Sở Nông nghiệp và Môi trường" in text
    assert "water.flood.dap-cau:dap-cau v3" in text
    commune = render(level_three, Channel.SMS, "vi", Audience.COMMUNE).text
    assert "Thông báo người dân: Di chuyển người và tài sản lên cao." in commune


def test_loudspeaker_script_is_speakable(level_three: Warning) -> None:
    text = render(level_three, Channel.LOUDSPEAKER, "vi").text
    assert "6,42 mét" in text
    assert "mức báo động ba" in text
    assert "0 giờ 20 phút ngày 7 tháng 10" in text
    assert "Phường Vũ Ninh và Phường Kinh Bắc" in text
    assert not re.search(r"\bI{1,3}\b", text), "a bare Roman numeral"
    assert not re.search(r"\d m\b", text), "an abbreviated unit"
    assert text.count("Di chuyển người và tài sản lên cao.") == 2
    assert text.startswith("Thông báo khẩn cấp.")


def test_loudspeaker_in_english_and_khmer(level_three: Warning) -> None:
    en = render(level_three, Channel.LOUDSPEAKER, "en").text
    assert "6.42 metres" in en and "alarm level three" in en
    assert not re.search(r"\b(II|III)\b|level I\b", en)
    assert en.count("Move people and belongings to higher ground.") == 2
    km = render(level_three, Channel.LOUDSPEAKER, "km").text
    assert "6,42 ម៉ែត្រ" in km and "កម្រិតប្រកាសអាសន្នទីបី" in km
    assert km.count("សូមនាំមនុស្ស និងទ្រព្យសម្បត្តិទៅទីខ្ពស់។") == 2


def test_named_levels_are_spoken_as_words() -> None:
    vi = render(_rain(), Channel.LOUDSPEAKER, "vi").text
    assert "mức mưa to" in vi and "72,5 mi-li-mét" in vi
    en = render(_rain(), Channel.LOUDSPEAKER, "en").text
    assert "level one" in en and "millimetres" in en


# --- agencies: detailed e-mail, webhook ----------------------------------------------


def test_agency_email_is_detailed(level_three: Warning) -> None:
    r = render(level_three, Channel.EMAIL, "vi")
    assert r.subject == "CẢNH BÁO BÁO ĐỘNG III (tăng từ báo động II): Mực nước sông Cầu tại Đáp Cầu"
    for fact in (
        "Tăng từ báo động II lên báo động III.",
        "Mức cảnh báo: báo động III - cực kỳ nghiêm trọng (Extreme)",
        "Giá trị đo: 6,42 m lúc 00:20 07/10/2025, trạm Đáp Cầu",
        "Ngưỡng: 6,30 m (vượt 0,12 m)",
        "Khu vực: Phường Vũ Ninh, Phường Kinh Bắc (Bắc Ninh)",
        "Cấp chỉ đạo: cấp tỉnh - Chủ tịch UBND tỉnh chỉ đạo",
        "Giai đoạn: 1 - ",
        "Cơ quan chủ trì: Sở Nông nghiệp và Môi trường",
        "Trạng thái xử lý: mới phát hiện",
        "Mã cảnh báo: water.flood.dap-cau:dap-cau, phiên bản 3",
        "- trạm dap-cau, water_level_m = 6,42 m lúc 00:20 07/10/2025 (ngưỡng 6,30 m)",
    ):
        assert fact in r.text, fact
    assert r.html is not None and "<table" in r.html and "6,42 m" in r.html
    en = render(level_three, Channel.EMAIL, "en")
    assert "Raised from alarm level II to alarm level III." in en.text
    assert "Threshold: 6.30 m (0.12 m above)" in en.text
    km = render(level_three, Channel.EMAIL, "km")
    assert "មន្ទីរកសិកម្ម និងបរិស្ថាន" in km.text and "6,42 m" in km.text


def test_all_clear_reads_as_such(cleared: Warning) -> None:
    sms = render(cleared, Channel.SMS, "vi", Audience.CITIZEN).text
    assert sms.startswith("HẾT CẢNH BÁO: Nước sông Cầu đã xuống dưới mức báo động.")
    assert "Di chuyển" not in sms and "báo động I." not in sms
    mail = render(cleared, Channel.EMAIL, "vi")
    assert mail.subject.startswith("HẾT CẢNH BÁO:")
    assert "Mức cảnh báo:" not in mail.text
    assert render(cleared, Channel.EMAIL, "en").subject.startswith("ALL CLEAR:")
    assert render(cleared, Channel.SMS, "km", Audience.CITIZEN).text.startswith("បញ្ចប់ការព្រមាន")
    speaker = render(cleared, Channel.LOUDSPEAKER, "vi").text
    assert speaker.startswith("Thông báo hết cảnh báo.")
    assert "4 mét" in speaker
    assert "cao hơn" not in speaker


def test_deescalation_reads_as_an_update(sequence: list[Warning]) -> None:
    w = sequence[3]
    assert w.transition is Transition.DEESCALATED and w.level == 2
    assert render(w, Channel.SMS, "vi", Audience.CITIZEN).text.startswith(
        "CẬP NHẬT: Nước sông Cầu đã rút xuống báo động II."
    )
    assert "Giảm từ báo động III xuống báo động II." in render(w, Channel.EMAIL, "vi").text
    assert "(down from alarm level III)" in render(w, Channel.EMAIL, "en").subject


def test_phase_change_shows_the_new_lead_agency(level_three: Warning, directory: Directory) -> None:
    w = level_three.model_copy(
        update={
            "version": 4,
            "transition": Transition.UPDATED,
            "previous_level": 3,
            "phase": Phase.SECURITY,
            "lead_agency": lead_agency(directory, level_three.domain, Phase.SECURITY),
            "annotations": {**level_three.annotations, "phase_reason": "tụ tập đông người"},
        }
    )
    mail = render(w, Channel.EMAIL, "vi")
    assert mail.subject.startswith("CẬP NHẬT CẢNH BÁO BÁO ĐỘNG III")
    assert "Giai đoạn 2: Công an tỉnh chủ trì." in mail.text
    assert "Cơ quan chủ trì: Công an tỉnh" in mail.text
    assert "Lý do chuyển giai đoạn: tụ tập đông người" in mail.text
    assert "Phase 2: the Provincial Police leads." in render(w, Channel.EMAIL, "en").text
    sms = render(w, Channel.SMS, "vi", Audience.CITIZEN).text
    assert "Công an tỉnh chủ trì ứng phó." in sms
    assert "ស្នងការដ្ឋាននគរបាលខេត្ត" in render(w, Channel.SMS, "km", Audience.CITIZEN).text


def test_webhook_payload(level_three: Warning) -> None:
    r = render(level_three, Channel.WEBHOOK, "en")
    assert r.payload is not None
    assert r.payload["type"] == "canhbao.warning"
    assert Warning.model_validate(r.payload["warning"]) == level_three
    assert set(r.payload["text"]) == {"vi", "en", "km"}
    assert r.payload["text"]["vi"] == summary(level_three, "vi")
    assert r.payload["text"]["en"] == summary(level_three, "en") == r.text
    json.dumps(r.payload)  # JSON-ready


# --- escaping and the sandbox ---------------------------------------------------------


def test_html_is_escaped_text_is_not(level_three: Warning) -> None:
    nasty = "<script>alert('x')</script> & co"
    w = level_three.model_copy(
        update={"annotations": {"summary_vi": nasty, "summary_en": nasty}, "exercise": True}
    )
    r = render(w, Channel.EMAIL, "vi")
    assert r.html is not None
    assert "<script>" not in r.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in r.html
    assert nasty in r.text and nasty in r.subject
    assert "&lt;" not in r.text
    payload = render(w, Channel.WEBHOOK, "vi").payload
    assert payload is not None and nasty in payload["text"]["vi"]
    assert nasty in render(w, Channel.SMS, "vi").text


def test_sandbox_refuses_a_malicious_channel_template(level_three: Warning, tmp_path: Path) -> None:
    shutil.copytree(TEMPLATE_DIR, tmp_path / "t")
    (tmp_path / "t" / "sms" / "sms.citizen.vi.txt.j2").write_text(
        "{{ w.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8"
    )
    with pytest.raises(SecurityError):
        render(level_three, Channel.SMS, "vi", Audience.CITIZEN, template_dir=tmp_path / "t")


# --- canhbao alerts render ------------------------------------------------------------


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="canhbao")
    sub = parser.add_subparsers(dest="command", required=True)
    alerts_cli.add_parsers(sub)
    args = parser.parse_args(["alerts", "render", *argv])
    return int(args.func(args))


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("email", ["Subject: CẢNH BÁO BÁO ĐỘNG III", "Ngưỡng: 6,30 m", "HTML part:"]),
        ("sms", ["with diacritics: UCS-2", "unaccented: GSM-7", "[1/"]),
        ("webhook", ['"type": "canhbao.warning"', '"vi": "[CẢNH BÁO BÁO ĐỘNG III]']),
        ("loudspeaker", ["6,42 mét", "Xin nhắc lại:"]),
    ],
)
def test_cli_renders_each_channel(
    capsys: pytest.CaptureFixture[str], channel: str, expected: list[str]
) -> None:
    assert _cli("--warning", str(EXAMPLE), "--channel", channel) == 0
    out = capsys.readouterr().out
    for piece in expected:
        assert piece in out, piece


def test_cli_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("--warning", str(EXAMPLE), "--channel", "email", "--html", "--lang", "en") == 0
    assert "<!DOCTYPE html>" in capsys.readouterr().out
    args = ("--warning", str(EXAMPLE), "--channel", "sms", "--lang", "km", "--audience", "citizen")
    assert _cli(*args) == 0
    out = capsys.readouterr().out
    assert "ទឹកទន្លេ Cầu" in out and "unaccented: none for km" in out
    assert _cli("--warning", str(EXAMPLE), "--channel", "sms", "--audience", "citizen") == 0
    out = capsys.readouterr().out
    assert "3 segments" in out and "CANH BAO: Nuoc song Cau" in out


def test_cli_cap_uses_alerting_cap(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Warning, Directory, tuple[str, ...]]] = []

    def cap_xml(warning: Warning, directory: Directory, langs: tuple[str, ...] = ()) -> str:
        calls.append((warning, directory, langs))
        return "<alert/>\n"

    fake = types.ModuleType("alerting.cap")
    fake.cap_xml = cap_xml  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "alerting.cap", fake)
    assert _cli("--warning", str(EXAMPLE), "--channel", "cap") == 0
    assert capsys.readouterr().out == "<alert/>\n"
    ((warning, directory, langs),) = calls
    assert warning.warning_id == "water.flood.dap-cau:dap-cau"
    assert isinstance(directory, Directory) and langs == ("vi", "en", "km")
    assert _cli("--warning", str(EXAMPLE), "--channel", "cap", "--lang", "km") == 0
    assert calls[-1][2] == ("km",)


def test_cli_cap_unavailable_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "alerting.cap", None)  # import fails
    assert _cli("--warning", str(EXAMPLE), "--channel", "cap") == 2
    captured = capsys.readouterr()
    assert "CAP rendering is not available" in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ('{"warning_id": ', "is not valid JSON: line 1"),
        ('{"warning_id": "x"}', "is not a valid warning"),
        ("[1, 2]", "is not a valid warning"),
    ],
)
def test_cli_bad_input_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "w.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert _cli("--warning", str(path), "--channel", "sms") == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and message in captured.err
    assert captured.out == ""


def test_example_file_is_the_documented_warning(level_three: Warning) -> None:
    w = level_three
    assert (w.level, w.level_name, w.hazard, w.subject) == (3, "III", "river_flood", "dap-cau")
    assert [a.code for a in w.areas] == ["bn-vu-ninh", "bn-kinh-bac"]
    assert w.lead_agency.code == "snnmt" and not w.exercise
    assert w.evidence[0].value == 6.42
    assert w.updated_at - w.raised_at == timedelta(minutes=20)
