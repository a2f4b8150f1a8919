"""Rendered warning text (alerting.templates) and who receives it (alerting.notify)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from alerting.directory import Directory
from alerting.templates import render, summary
from pipeline.lifecycle import Context
from pipeline.rules.model import Rule
from tests.helpers import step
from topics.models import Audience, Channel, Notification, Phase, Transition, Warning

REPO = Path(__file__).resolve().parents[2]


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
    assert "0.08 m above alarm level II at 5.30 m" in text
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
        # The sandbox's verdicts are remembered per type and name: a safe read first,
        # then the same names reached through str.format, must still be refused.
        "{{ w.level }}{{ 'a'.upper() }}{{ '{0.__class__}'.format(w) }}",
        "{{ w.level }}{{ w.level }}{{ w.__class__ }}",
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


@pytest.fixture(scope="module")
def routing():
    from alerting.routes import load_routing

    return load_routing(REPO / "config/routes.yaml")


@pytest.fixture(scope="module")
def audiences():
    from alerting.audiences import Audiences

    return Audiences.load(REPO / "config/audiences.yaml")


def _plan(w: Warning, directory: Directory, routing, audiences, at: datetime | None = None):
    from alerting.messages import renderer
    from alerting.notify import plan

    noon = datetime(2025, 10, 7, 5, 0, tzinfo=UTC)  # 12:00 in Vietnam: no quiet hours
    return plan(w, routing, directory, audiences, renderer(directory), active=[], silences=[],
                now=at or noon)  # fmt: skip


def _to(p, receiver_id: str, channel: Channel) -> Notification:
    (n,) = [n for n in p.notifications if n.receiver_id == receiver_id and n.channel is channel]
    return n


def test_water_warning_goes_to_snnmt_webhook_and_email(
    level_two: Warning, directory: Directory, routing, audiences
) -> None:
    p = _plan(level_two, directory, routing, audiences)
    n = _to(p, "snnmt-webhook", Channel.WEBHOOK)
    assert n.audience is Audience.AGENCY
    assert n.notification_id == "water.flood.dap-cau:dap-cau:v2:snnmt-webhook:webhook"
    assert n.warning_version == 2
    assert n.address.endswith("/hooks/snnmt")
    assert n.lang == "vi" and not n.exercise
    mail = _to(p, "snnmt-email", Channel.EMAIL)
    assert "II" in mail.subject and mail.html is not None and "<html" in mail.html.lower()
    # The affected communes' committees hear of it too, and the coordinating agencies.
    assert {"ubnd-bn-vu-ninh", "ubnd-bn-kinh-bac", "bchqs-webhook", "svhttdl-webhook"} <= {
        n.receiver_id for n in p.notifications
    }
    # Level II is not for citizens: no broadcast.
    assert p.broadcasts == []


def test_webhook_payload(level_two: Warning, directory: Directory, routing, audiences) -> None:
    n = _to(_plan(level_two, directory, routing, audiences), "snnmt-webhook", Channel.WEBHOOK)
    p = n.payload
    assert p["type"] == "canhbao.warning"
    assert p["warning"]["level"] == 2
    assert p["warning"]["transition"] == "escalated"
    assert Warning.model_validate(p["warning"]) == level_two
    assert "5,38" in p["text"]["vi"] and "5.38" in p["text"]["en"]
    assert Notification.model_validate_json(n.to_bytes()) == n


def test_each_version_gets_its_own_notification_id(
    level_two: Warning, cleared: Warning, directory: Directory, routing, audiences
) -> None:
    a = _to(_plan(level_two, directory, routing, audiences), "snnmt-webhook", Channel.WEBHOOK)
    b = _to(_plan(cleared, directory, routing, audiences), "snnmt-webhook", Channel.WEBHOOK)
    assert a.notification_id != b.notification_id
    assert b.notification_id.endswith(":v3:snnmt-webhook:webhook")


def test_phase_three_water_goes_to_military(
    level_two: Warning, directory: Directory, routing, audiences
) -> None:
    from alerting.governance import lead_agency

    w = level_two.model_copy(
        update={
            "phase": Phase.EMERGENCY,
            "lead_agency": lead_agency(directory, level_two.domain, Phase.EMERGENCY),
        }
    )
    p = _plan(w, directory, routing, audiences)
    n = _to(p, "bchqs-webhook", Channel.WEBHOOK)
    assert n.address.endswith("/hooks/bchqs")
    # The department still coordinates (webhook), and the police join in phase 3.
    assert {"snnmt-webhook", "ca-tinh-webhook"} <= {x.receiver_id for x in p.notifications}
    assert w.lead_agency.code == "bchqs"


def test_exercise_notification_is_flagged(
    level_two: Warning, directory: Directory, routing, audiences
) -> None:
    p = _plan(_drill(level_two), directory, routing, audiences)
    assert all(n.exercise for n in p.notifications)
    assert _to(p, "snnmt-email", Channel.EMAIL).subject.startswith("[DIỄN TẬP")


def test_exercise_subject_still_names_the_level(
    level_two: Warning, cleared: Warning, directory: Directory, routing, audiences
) -> None:
    n2 = _to(_plan(_drill(level_two), directory, routing, audiences), "snnmt-email", Channel.EMAIL)
    n0 = _to(_plan(_drill(cleared), directory, routing, audiences), "snnmt-email", Channel.EMAIL)
    assert "II" in n2.subject
    assert n2.subject != n0.subject


def test_quiet_hours_hold_back_a_moderate_sms_at_night_but_record_it(
    dap_cau: Rule, ctx: Context, make_reading, directory: Directory, routing, audiences
) -> None:
    level_one = step(dap_cau, None, make_reading(4.35), ctx)
    assert level_one is not None and level_one.severity.value == "Moderate"
    night = datetime(2025, 10, 7, 16, 0, tzinfo=UTC)  # 23:00 in Vietnam
    p = _plan(level_one, directory, routing, audiences, at=night)
    assert not [n for n in p.notifications if n.channel is Channel.SMS]
    held = [s for s in p.suppressed if s.channel is Channel.SMS]
    assert held and all("quiet hours" in s.reason for s in held)
    # The webhook still goes: quiet hours are for the channels that wake people up.
    assert _to(p, "snnmt-webhook", Channel.WEBHOOK)
