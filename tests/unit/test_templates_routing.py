"""Rendered warning text (alerting.templates) and who receives it (alerting.routing)."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from alerting.directory import Directory
from alerting.routing import notifications_for, receivers_for
from alerting.templates import render, summary
from pipeline.lifecycle import Context, step
from pipeline.rules.model import Rule
from topics.models import Audience, Channel, Notification, Phase, Transition, Warning


@pytest.fixture
def level_two(dap_cau: Rule, ctx: Context, make_reading) -> Warning:
    raised = step(dap_cau, None, make_reading(4.35, minutes=0), ctx)
    w = step(dap_cau, raised, make_reading(5.38, minutes=10), ctx)
    assert w is not None and w.level == 2
    return w


@pytest.fixture
def cleared(dap_cau: Rule, ctx: Context, make_reading, level_two: Warning) -> Warning:
    w = step(dap_cau, level_two, make_reading(4.0, minutes=20), ctx)
    assert w is not None and w.transition is Transition.CLEARED
    return w


def _drill(w: Warning) -> Warning:
    return w.model_copy(update={"exercise": True})


def test_summary_vi_level_two(level_two: Warning) -> None:
    text = summary(level_two, "vi")
    assert text.startswith("[CẢNH BÁO BÁO ĐỘNG II]")
    assert "BÁO ĐỘNG II" in text
    assert "5,38 m" in text
    assert "5.38" not in text
    assert "(5,30 m)" in text
    assert "00:10 07/10/2025" in text
    assert "Phường Vũ Ninh" in text and "Phường Kinh Bắc" in text
    assert "Sở Nông nghiệp và Môi trường" in text
    assert "DIỄN TẬP" not in text


def test_summary_en_level_two(level_two: Warning) -> None:
    text = summary(level_two, "en")
    assert text.startswith("[WARNING ALARM LEVEL II]")
    assert "ALARM LEVEL II" in text
    assert "5.38 m" in text
    assert "0.08 m above level II (5.30 m)" in text
    assert "Department of Agriculture and Environment" in text
    assert "Phường Vũ Ninh, Phường Kinh Bắc" in text


def test_summary_time_is_shown_in_vietnam_time(level_two: Warning) -> None:
    ev = level_two.evidence[0]
    in_utc = ev.model_copy(update={"observed_at": ev.observed_at.astimezone(UTC)})
    assert in_utc.observed_at.hour == 17  # 00:10 +07:00 is 17:10 UTC the day before
    w = level_two.model_copy(update={"evidence": [in_utc]})
    assert "00:10 07/10/2025" in summary(w, "en")


def test_summary_is_one_line(level_two: Warning) -> None:
    for lang in ("vi", "en"):
        text = summary(level_two, lang)
        assert "\n" not in text
        assert "  " not in text


def test_all_clear(cleared: Warning) -> None:
    vi, en = summary(cleared, "vi"), summary(cleared, "en")
    assert vi.startswith("[HẾT CẢNH BÁO]")
    assert "4,00 m" in vi
    assert en.startswith("[ALL CLEAR]")
    assert "back below alarm levels" in en
    assert "BÁO ĐỘNG" not in vi and "ALARM LEVEL" not in en


def test_exercise_is_marked_first(level_two: Warning, cleared: Warning) -> None:
    for w in (level_two, cleared):
        assert summary(_drill(w), "vi").startswith("[DIỄN TẬP")
        assert summary(_drill(w), "en").startswith("[EXERCISE")


def test_exercise_from_context(dap_cau: Rule, directory: Directory, make_reading) -> None:
    w = step(dap_cau, None, make_reading(4.35), Context(directory=directory, exercise=True))
    assert w is not None
    assert summary(w, "vi").startswith("[DIỄN TẬP - KHÔNG PHẢI THẬT]")


def test_template_dir_renders_benign_template(level_two: Warning, tmp_path: Path) -> None:
    (tmp_path / "ok.txt.j2").write_text("{{ w.level_name }} {{ w.evidence[0].value | num_vi }}")
    assert render("ok.txt.j2", level_two, template_dir=tmp_path) == "II 5,38"


@pytest.mark.parametrize(
    "source",
    [
        "{{ w.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{{ w.model_dump.__globals__ }}",
        "{{ w.__dict__ }}",
        "{{ (w|attr('__class__')).__base__ }}",
    ],
)
def test_sandbox_refuses_python_internals(level_two: Warning, tmp_path: Path, source: str):
    (tmp_path / "evil.txt.j2").write_text(source)
    with pytest.raises(SecurityError) as exc:
        render("evil.txt.j2", level_two, template_dir=tmp_path)
    assert "unsafe" in str(exc.value)
    assert "<class" not in str(exc.value)


def test_undefined_variable_fails_loudly(level_two: Warning, tmp_path: Path) -> None:
    from jinja2.exceptions import UndefinedError

    (tmp_path / "typo.txt.j2").write_text("{{ w.levle }}")
    with pytest.raises(UndefinedError):
        render("typo.txt.j2", level_two, template_dir=tmp_path)


def test_water_warning_goes_to_snnmt_webhook(level_two: Warning, directory: Directory) -> None:
    (n,) = notifications_for(level_two, directory)
    assert isinstance(n, Notification)
    assert n.receiver_id == "snnmt-webhook"
    assert n.channel is Channel.WEBHOOK
    assert n.audience is Audience.AGENCY
    assert n.notification_id == f"{level_two.warning_id}:v{level_two.version}:snnmt-webhook"
    assert n.notification_id == "water.flood.dap-cau:dap-cau:v2:snnmt-webhook"
    assert n.warning_id == level_two.warning_id
    assert n.warning_version == 2
    assert n.address.endswith("/hooks/snnmt")
    assert n.lang == "vi"
    assert n.body == summary(level_two, "vi")
    assert n.subject == "CẢNH BÁO BÁO ĐỘNG II"
    assert not n.exercise


def test_webhook_payload(level_two: Warning, directory: Directory) -> None:
    (n,) = notifications_for(level_two, directory)
    p = n.payload
    assert p["type"] == "canhbao.warning"
    assert p["warning"]["level"] == 2
    assert p["warning"]["warning_id"] == level_two.warning_id
    assert p["warning"]["transition"] == "escalated"
    assert Warning.model_validate(p["warning"]) == level_two
    assert p["text"]["vi"] == summary(level_two, "vi")
    assert p["text"]["en"] == summary(level_two, "en")
    assert "5,38" in p["text"]["vi"] and "5.38" in p["text"]["en"]


def test_notification_serialises(level_two: Warning, directory: Directory) -> None:
    (n,) = notifications_for(level_two, directory)
    assert Notification.model_validate_json(n.to_bytes()) == n


def test_each_version_gets_its_own_notification_id(
    level_two: Warning, cleared: Warning, directory: Directory
) -> None:
    (a,) = notifications_for(level_two, directory)
    (b,) = notifications_for(cleared, directory)
    assert a.notification_id != b.notification_id
    assert b.notification_id.endswith(":v3:snnmt-webhook")


def test_phase_three_water_goes_to_military(level_two: Warning, directory: Directory) -> None:
    from alerting.governance import lead_agency

    w = level_two.model_copy(
        update={
            "phase": Phase.EMERGENCY,
            "lead_agency": lead_agency(directory, level_two.domain, Phase.EMERGENCY),
        }
    )
    assert [r.id for r in receivers_for(w, directory)] == ["bchqs-webhook"]
    (n,) = notifications_for(w, directory)
    assert n.address.endswith("/hooks/bchqs")
    assert "Bộ Chỉ huy Quân sự tỉnh" in n.body


def test_exercise_notification_is_flagged(level_two: Warning, directory: Directory) -> None:
    (n,) = notifications_for(_drill(level_two), directory)
    assert n.exercise
    assert n.body.startswith("[DIỄN TẬP")


def test_exercise_subject_still_names_the_level(
    level_two: Warning, cleared: Warning, directory: Directory
) -> None:
    (n2,) = notifications_for(_drill(level_two), directory)
    (n0,) = notifications_for(_drill(cleared), directory)
    assert "BÁO ĐỘNG II" in n2.subject
    assert n2.subject != n0.subject
